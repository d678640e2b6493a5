"""The sampler's C helper (``topk.c``): found, or built once with this machine's C compiler.

A small C library rather than a Python extension: it needs no Python headers, one build serves
every Python, and it is called through ctypes. Where it comes from, first found first:

1. next to this file (``topk.so``/``.dylib``/``.dll``): the double-click app ships it there
   (packaging/build.sh builds it with ``python -m app.engine.native build DIR``);
2. the cache (:func:`app.core.paths.cache_dir` ``/native``), under a name that holds the source's
   hash, so an edited ``topk.c`` is built again;
3. built into the cache with the C compiler (``$CC``, Python's own, ``cc``, ``gcc``, ``clang``),
   within :data:`BUILD_TIMEOUT_S`, written to a temporary name and renamed, so two processes
   building at once never load half a file.

Without a compiler, or with ``TAILORLM_NATIVE=0``, :func:`topk` is None and the sampler does the
same work in numpy (~3× slower on a 262k vocabulary: tests/bench/sampler_speed.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("topk.c")
VERSION = 1  # tlm_topk_version() of the library this file expects
ENV = "TAILORLM_NATIVE"  # "0": never use (or build) the C helper
BUILD_TIMEOUT_S = 60.0
# -ffp-contract=off: the penalty's float arithmetic rounds as llama.cpp's and numpy's does, never fused
CFLAGS = ("-O3", "-std=c99", "-shared", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off")
LIB_SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")

c_float_p = ctypes.POINTER(ctypes.c_float)
c_int32_p = ctypes.POINTER(ctypes.c_int32)


@dataclass(frozen=True)
class TopK:
    """The loaded library: ``candidates`` is ``tlm_topk_candidates`` (see topk.c)."""

    path: Path
    candidates: Any


_loaded: tuple[TopK | None, str] | None = None


def topk() -> TopK | None:
    """The C helper, or None (the reason is :func:`why_not`). Loaded once per process."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded[0]


def why_not() -> str:
    """Why :func:`topk` is None ("" when it is not)."""
    topk()
    assert _loaded is not None
    return _loaded[1]


def _load() -> tuple[TopK | None, str]:
    if os.environ.get(ENV, "").strip() == "0":
        return None, f"{ENV}=0"
    shipped = Path(__file__).with_name("topk" + LIB_SUFFIX)
    if shipped.is_file():
        return _open(shipped)
    try:
        from app.core import paths

        cached = cached_path(paths.cache_dir() / "native")
        if cached.is_file():
            found = _open(cached)
            if found[0] is not None:
                return found
            # damaged (a disk that filled up, a copy cut short): build it again
        build(cached)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return None, f"could not build {SOURCE.name}: {e}"
    return _open(cached)


def cached_path(folder: Path) -> Path:
    """Where the cache keeps the library built from today's source with today's flags."""
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    return folder / f"topk-{digest}-{sysconfig.get_platform()}{LIB_SUFFIX}"


def compiler() -> list[str] | None:
    """The C compiler command: ``$CC``, the one Python was built with, or the usual names."""
    for cmd in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if not cmd:
            continue
        argv = shlex.split(cmd)
        if argv and shutil.which(argv[0]):
            return argv
    return None


def build(dest: Path) -> Path:
    """Compile topk.c into ``dest`` (atomically). Raises RuntimeError when no compiler is found or
    it fails, subprocess.TimeoutExpired past BUILD_TIMEOUT_S."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        proc = subprocess.run([*cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{cc[0]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _open(path: Path) -> tuple[TopK | None, str]:
    try:
        lib = ctypes.CDLL(str(path))
        version = lib.tlm_topk_version
        version.restype = ctypes.c_int32
        if version() != VERSION:
            return None, f"{path} is version {version()}, not {VERSION}"
        fn = lib.tlm_topk_candidates
    except (OSError, AttributeError) as e:
        return None, f"could not load {path}: {e}"
    fn.restype = ctypes.c_int32
    fn.argtypes = (c_float_p, ctypes.c_int32, ctypes.c_int32, c_int32_p, c_int32_p, ctypes.c_int32,
                   ctypes.c_float, ctypes.c_float, ctypes.c_float, c_float_p, ctypes.c_void_p,
                   ctypes.c_int32)  # fmt: skip
    return TopK(path, fn), ""


def main(argv: list[str]) -> int:
    """``python -m app.engine.native build DIR``: write the library to DIR (packaging/build.sh);
    ``python -m app.engine.native``: load or build it here and say where it is."""
    if argv[:1] == ["build"] and len(argv) == 2:
        sys.stdout.write(f"{build(Path(argv[1]) / ('topk' + LIB_SUFFIX))}\n")
        return 0
    lib = topk()
    sys.stdout.write(f"{lib.path if lib else f'not available: {why_not()}'}\n")
    return 0 if lib else 1

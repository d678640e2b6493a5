"""The model process's C helpers, found, or built once with this machine's C compiler: the
sampler's cut of the vocabulary (``topk.c``) and llama.cpp's abort callback (``abort.c``).

A small C library rather than a Python extension: it needs no Python headers, one build serves
every Python, and it is called through ctypes. Where it comes from, first found first:

1. next to this file (``tailorlm_native.so``/``.dylib``/``.dll``): the double-click app ships it
   there (packaging/build.sh builds it with ``python -m app.engine.native build DIR``);
2. the cache (:func:`app.core.paths.cache_dir` ``/native``), under a name that holds the sources'
   hash, so an edited source is built again;
3. built into the cache with the C compiler (``$CC``, Python's own, ``cc``, ``gcc``, ``clang``),
   within :data:`BUILD_TIMEOUT_S`, written to a temporary name and renamed, so two processes
   building at once never load half a file.

Without a compiler, or with ``TAILORLM_NATIVE=0``, :func:`library` is None: the sampler does the
same work in numpy (~3.5× slower: tests/bench/sampler_speed.py) and the abort callback is Python.
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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCES = (Path(__file__).with_name("topk.c"), Path(__file__).with_name("abort.c"))
NAME = "tailorlm_native"
VERSION = 2  # tlm_native_version() of the library this file expects
ENV = "TAILORLM_NATIVE"  # "0": never use (or build) the C helper
BUILD_TIMEOUT_S = 60.0
# -ffp-contract=off: the penalty's float arithmetic rounds as llama.cpp's and numpy's does, never fused
CFLAGS = ("-O3", "-std=c99", "-shared", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off")
LIB_SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")

c_float_p = ctypes.POINTER(ctypes.c_float)
c_int32_p = ctypes.POINTER(ctypes.c_int32)


@dataclass(frozen=True)
class Native:
    """The loaded library: ``candidates`` is ``tlm_topk_candidates`` (topk.c); ``abort_address`` the
    address of ``tlm_abort_requested`` (abort.c), for llama.cpp's ``abort_callback``."""

    path: Path
    candidates: Any
    abort_address: int


_loaded: tuple[Native | None, str] | None = None


class AbortFlag(threading.Event):
    """An event whose state llama.cpp's C abort callback (``tlm_abort_requested``) reads without
    Python: :meth:`set` and :meth:`clear` also write the int ``flag`` it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.flag = ctypes.c_int(0)

    def set(self) -> None:
        self.flag.value = 1
        super().set()

    def clear(self) -> None:
        super().clear()
        self.flag.value = 0


def library() -> Native | None:
    """The C helpers, or None (the reason is :func:`why_not`). Loaded once per process."""
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded[0]


def why_not() -> str:
    """Why :func:`library` is None ("" when it is not)."""
    library()
    assert _loaded is not None
    return _loaded[1]


def _load() -> tuple[Native | None, str]:
    if os.environ.get(ENV, "").strip() == "0":
        return None, f"{ENV}=0"
    shipped = Path(__file__).with_name(NAME + LIB_SUFFIX)
    if shipped.is_file():
        return _open(shipped)
    try:
        cached = cached_library()
        if cached.is_file():
            found = _open(cached)
            if found[0] is not None:
                return found
            # damaged (a disk that filled up, a copy cut short): build it again
        build(cached)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return None, f"could not build {NAME}: {e}"
    return _open(cached)


def cached_library() -> Path:
    """Where this user's cache keeps the library (:func:`app.core.paths.cache_dir` ``/native``)."""
    from app.core import paths

    return cached_path(paths.cache_dir() / "native")


def cached_path(folder: Path) -> Path:
    """Where the cache keeps the library built from today's sources with today's flags."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in SOURCES) + " ".join(CFLAGS).encode())
    return folder / f"{NAME}-{digest.hexdigest()[:16]}-{sysconfig.get_platform()}{LIB_SUFFIX}"


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
    """Compile the sources into ``dest`` (atomically). Raises RuntimeError when no compiler is found or
    it fails, subprocess.TimeoutExpired past BUILD_TIMEOUT_S."""
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        proc = subprocess.run([*cc, *CFLAGS, "-o", str(tmp), *map(str, SOURCES)], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{cc[0]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _open(path: Path) -> tuple[Native | None, str]:
    try:
        lib = ctypes.CDLL(str(path))
        version = lib.tlm_native_version
        version.restype = ctypes.c_int32
        if version() != VERSION:
            return None, f"{path} is version {version()}, not {VERSION}"
        fn = lib.tlm_topk_candidates
        abort_address = ctypes.cast(lib.tlm_abort_requested, ctypes.c_void_p).value
    except (OSError, AttributeError) as e:
        return None, f"could not load {path}: {e}"
    fn.restype = ctypes.c_int32
    fn.argtypes = (c_float_p, ctypes.c_int32, ctypes.c_int32, c_int32_p, c_int32_p, ctypes.c_int32,
                   ctypes.c_float, ctypes.c_float, ctypes.c_float, c_float_p, ctypes.c_void_p,
                   ctypes.c_int32)  # fmt: skip
    assert abort_address is not None
    return Native(path, fn, abort_address), ""


def main(argv: list[str]) -> int:
    """``python -m app.engine.native build DIR``: write the library to DIR (packaging/build.sh);
    ``python -m app.engine.native``: load or build it here and say where it is."""
    if argv[:1] == ["build"] and len(argv) == 2:
        sys.stdout.write(f"{build(Path(argv[1]) / (NAME + LIB_SUFFIX))}\n")
        return 0
    lib = library()
    sys.stdout.write(f"{lib.path if lib else f'not available: {why_not()}'}\n")
    return 0 if lib else 1

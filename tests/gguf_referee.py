"""llama.cpp's own GGUF parser as a referee: does ``gguf_init_from_file`` accept this file?

The parser comes from the libggml-base that llama-cpp-python ships (``llama_cpp/lib``), called with
ctypes as llama.cpp's tools call it for a header: ``gguf_init_params{no_alloc = true, ctx = NULL}``.
It runs in a child process over a batch of paths, so an abort in llama.cpp (a GGML_ASSERT) cannot
take the caller down: the file it died on is marked, and a fresh child takes the rest.
With ``ctx = NULL`` llama.cpp reads the header only: it never checks that the data fits in the file.

``python tests/gguf_referee.py LIB`` is the child: paths on stdin, one verdict a line.
"""

from __future__ import annotations

import ctypes
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHILD_ADDRESS_SPACE_BYTES = 4 << 30  # the child's cap: llama.cpp checks every count against the file


def referee_library() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise RuntimeError("llama-cpp-python is not installed")
    return Path(spec.origin).parent / "lib" / "libggml-base.so"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    why: str = ""  # llama.cpp's last error line
    died: bool = False  # llama.cpp aborted or hung on this file


def referee(paths: list[Path], library: Path | None = None, timeout_s: float = 120.0) -> list[Verdict]:
    """llama.cpp's verdict on each file; a child that dies is replaced and the rest carries on."""
    lib = library or referee_library()
    verdicts: list[Verdict] = []
    rest = list(paths)
    while rest:
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), str(lib)],
                input="".join(f"{p}\n" for p in rest), capture_output=True, text=True, timeout=timeout_s,
                check=False, preexec_fn=_cap_memory,
            )  # fmt: skip
            lines, tail = proc.stdout.splitlines(), (proc.stderr.strip().splitlines() or [""])[-1]
            died = f"exit {proc.returncode}: {tail}"
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            lines, died = out.splitlines(), f"no answer in {timeout_s:.0f} s"
        for line in lines[: len(rest)]:
            ok, _, why = line.partition("\t")
            verdicts.append(Verdict(ok == "1", why))
        if len(lines) >= len(rest):
            break
        verdicts.append(Verdict(False, died, died=True))
        rest = rest[len(lines) + 1 :]
    return verdicts


def _referee_main(library: str) -> None:
    lib = ctypes.CDLL(library)
    log_type = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    last = [b""]

    def on_log(level: int, text: bytes | None, user: object) -> None:
        if text and text.strip():
            last[0] = text.strip()

    callback = log_type(on_log)
    lib.ggml_log_set(callback, None)

    class Params(ctypes.Structure):  # struct gguf_init_params (ggml/include/gguf.h)
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, Params]
    lib.gguf_free.argtypes = [ctypes.c_void_p]
    for line in sys.stdin:
        last[0] = b""
        ctx = lib.gguf_init_from_file(line.rstrip("\n").encode(), Params(True, None))
        if ctx:
            lib.gguf_free(ctx)
            sys.stdout.write("1\n")
        else:
            sys.stdout.write("0\t" + last[0].decode(errors="replace").replace("\t", " ") + "\n")
        sys.stdout.flush()


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE_BYTES, resource.RLIM_INFINITY))


if __name__ == "__main__":
    _referee_main(sys.argv[1])

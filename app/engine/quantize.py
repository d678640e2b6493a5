"""GGUF → any llama.cpp quantization with ``llama_model_quantize`` — the real quantizer — in a
child process (:func:`app.engine.child.job`), so a crash cannot take the app down and a cancel is
a kill.

Progress comes from llama.cpp's own log, one line per tensor (``[  12/ 272] blk.1.attn_q.weight``),
which the child turns into :class:`QuantizeProgress` messages. The output is written under a
temporary name and renamed into place on success; a failure or a cancel removes it. Run as
``python -m app.engine.quantize`` (one :class:`Quantize` request on stdin) it is the child.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from app.core.advice.quality import quality_of
from app.core.build.convert import predicted_bytes
from app.core.errors import ConversionError
from app.core.hub.download import check_disk_space
from app.engine import protocol as P
from app.engine.child import job, serve_one_job
from app.engine.protocol import QuantizeProgress

__all__ = ["QUANT_TYPES", "QuantizeProgress", "precision_warnings", "quantize"]

# What `tailorlm quantize --to` offers: llama.cpp file types that need no importance matrix.
QUANT_TYPES = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
               "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32")  # fmt: skip
_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_LOG_LINES_KEPT = 40  # the child's log tail, for a failure's message


def precision_warnings(src_type: str | None, target: str) -> list[str]:
    """Plain-words warnings when requantizing cannot give what the target's name promises."""
    if src_type is None or src_type in ("F32", "F16", "BF16"):
        return []
    src_q, dst_q = quality_of(src_type), quality_of(target)
    if src_q.kld > dst_q.kld:
        return [f"The source is already {src_type}: quantizing it to {target} cannot bring back what {src_type} "
                f"lost, and the file gets bigger. Start from the F16/BF16 original for a real {target}."]  # fmt: skip
    return [
        f"Requantizing from {src_type} adds its error to {target}'s; starting from F16/BF16 is slightly better."
    ]


def quantize(
    src: Path,
    out: Path,
    *,
    to: str,
    n_threads: int = 0,
    on_progress: Callable[[QuantizeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Path, list[str]]:
    """Quantize ``src`` to ``to``; returns the output path and warnings about the source's precision."""
    from app.core.model.source import model_from_gguf

    to = to.upper()
    if to not in QUANT_TYPES:
        raise ConversionError(
            f"{to} is not a quantization TailorLM can make.", hint="Choose one of: " + ", ".join(QUANT_TYPES)
        )
    model = model_from_gguf(src)  # a truncated or corrupt file fails here, with a clear message
    warnings = precision_warnings(model.file_type, to)
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    check_disk_space(out.parent, predicted_bytes(model, to))
    tmp = out.with_name(f".{out.name}.quantizing")
    tmp.unlink(missing_ok=True)

    request = P.Quantize(source=str(src), output=str(tmp), to=to, n_threads=n_threads)
    try:
        for msg in job("app.engine.quantize", request, result=P.Quantized, cancel=cancel,
                       what="llama.cpp's quantizer", hint="Nothing was kept.",
                       cancelled_message="Stopped; nothing was kept."):  # fmt: skip
            if isinstance(msg, P.QuantizeProgress):
                if on_progress is not None:
                    on_progress(msg)
            elif isinstance(msg, P.Failed):
                raise _failure(msg.message, src, out)
            elif isinstance(msg, P.Quantized):
                break
        if not tmp.exists():
            raise _failure("", src, out)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, warnings


def _failure(log_tail: str, src: Path, out: Path) -> ConversionError:
    if "No space left" in log_tail or "ENOSPC" in log_tail:
        return ConversionError(f"The disk filled up while writing {out.name}; nothing was kept.",
                               hint="Free some space and try again.")  # fmt: skip
    lines = log_tail.splitlines()
    last = next((ln for ln in reversed(lines) if "error" in ln.lower() or "failed" in ln.lower()), "")
    return ConversionError(f"llama.cpp's quantizer failed on {src.name}{': ' + last[-200:] if last else ''}.",
                           hint="Nothing was kept.")  # fmt: skip


# --- the child -------------------------------------------------------------------------------


def _ftype(name: str) -> int:
    import llama_cpp

    attr = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    return int(getattr(llama_cpp, attr))


def _child(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    """Quantize as ``request`` says; each tensor line of llama.cpp's log becomes a progress message,
    the rest goes to stderr (the parent keeps its tail)."""
    import ctypes

    import llama_cpp

    if not isinstance(request, P.Quantize):
        raise ConversionError(f"The quantizer got a {request.kind} request.")
    partial = bytearray()  # llama.cpp logs a tensor's line in several calls
    tail: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        partial.extend(text)
        while (end := partial.find(b"\n")) >= 0:
            line = partial[:end].decode("utf-8", "replace")
            del partial[: end + 1]
            if m := _TENSOR.match(line):
                send(P.QuantizeProgress(fraction=int(m.group(1)) / int(m.group(2)), tensor=m.group(3)))
            else:
                sys.stderr.write(line + "\n")
                tail.append(line)
                del tail[:-_LOG_LINES_KEPT]

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = request.n_threads
    params.ftype = _ftype(request.to)
    params.allow_requantize = True  # a quantized source is allowed; the parent warns about it
    rc = int(
        llama_cpp.llama_model_quantize(request.source.encode(), request.output.encode(), ctypes.byref(params))
    )
    if rc != 0:
        return P.Failed(stage=request.kind, message="\n".join(tail))
    return P.Quantized(output=request.output)


if __name__ == "__main__":
    serve_one_job(_child)

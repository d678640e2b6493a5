"""GGUF → any llama.cpp quantization with ``llama_model_quantize`` — the real quantizer — in a
child process, so a crash cannot take the app down and a cancel is a kill.

Progress comes from llama.cpp's own log, one line per tensor (``[  12/ 272] blk.1.attn_q.weight``).
The output is written under a temporary name and renamed into place on success; a failure or a
cancel removes it. Run as ``python -m app.engine.quantize SRC DST TYPE THREADS`` it is the child.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.advice.quality import quality_of
from app.core.build.convert import ConversionError, predicted_bytes, run_logged
from app.core.hub.download import check_disk_space
from app.core.runtime import module_command

# What `tailorlm quantize --to` offers: llama.cpp file types that need no importance matrix.
QUANT_TYPES = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_1", "Q4_K_S", "Q4_K_M", "Q5_0", "Q5_1",
               "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32")  # fmt: skip
_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


@dataclass(frozen=True)
class QuantizeProgress:
    fraction: float
    tensor: str


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

    def on_line(line: str) -> None:
        if on_progress is not None and (m := _TENSOR.match(line)):
            on_progress(QuantizeProgress(int(m.group(1)) / int(m.group(2)), m.group(3)))

    cmd = module_command("app.engine.quantize", str(src), str(tmp), to, str(n_threads))
    try:
        rc, tail = run_logged(cmd, on_line, cancel)
        if rc != 0 or not tmp.exists():
            text = "\n".join(tail)
            if "No space left" in text or "ENOSPC" in text:
                raise ConversionError(f"The disk filled up while writing {out.name}; nothing was kept.",
                                      hint="Free some space and try again.")  # fmt: skip
            last = next((ln for ln in reversed(tail) if "error" in ln.lower() or "failed" in ln.lower()), "")
            raise ConversionError(f"llama.cpp's quantizer failed on {src.name}{': ' + last[-200:] if last else ''}.",
                                  hint="Nothing was kept.")  # fmt: skip
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, warnings


def _ftype(name: str) -> int:
    import llama_cpp

    attr = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    return int(getattr(llama_cpp, attr))


def _child(src: str, dst: str, to: str, n_threads: int) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = n_threads
    params.ftype = _ftype(to)
    params.allow_requantize = True  # a quantized source is allowed; the parent warns about it
    return int(llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)))


if __name__ == "__main__":
    sys.exit(1 if _child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])) != 0 else 0)

"""GGUF → any llama.cpp quantization with ``llama_model_quantize`` — the real quantizer — in a
child process (:mod:`app.engine.quantize_child`, through :func:`app.engine.child.run_job`), so a
crash cannot take the app down and a cancel is a kill.

The child starts first and loads llama.cpp's bindings (~0.1 s) while this side checks the request
(the source's header, the importance matrix, the disk space: ~0.1 s), which counts for small
models, whose whole quantization takes a second or two; the importance matrix this side read and
checked goes to the child as the values the quantizer takes, in a raw file beside the output, so
the child needs neither numpy nor a GGUF reader. The output is written under a temporary name and
renamed into place on success; a failure or a cancel removes it (and the values file).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.advice.quality import quality_of
from app.core.build.convert import predicted_bytes
from app.core.errors import ConversionError
from app.core.hub.download import check_disk_space
from app.core.model import ggml_types
from app.core.model.quant_recipe import ALL_FTYPES, IMATRIX_FTYPES
from app.engine import protocol as P
from app.engine.child import run_job, start_job
from app.engine.protocol import QuantizeProgress
from app.engine.quantize_child import KEEP_FLAG

if TYPE_CHECKING:  # numpy stays out of the child until llama_cpp is loaded (imatrix_child.py says why)
    from app.core.model.imatrix_file import Imatrix, ImatrixKV
    from app.core.model.info import ModelInfo

__all__ = ["NEEDS_IMATRIX", "QUANT_TYPES", "QuantizeProgress", "parse_keep", "precision_warnings", "quantize"]

# What `tailorlm quantize --to` offers: every file type of llama-quantize (smallest first) that
# TailorLM can size and read back; NEEDS_IMATRIX: those llama.cpp refuses without an importance
# matrix for most models (whether it does for one model: quant_recipe.requires_imatrix).
QUANT_TYPES = ALL_FTYPES
NEEDS_IMATRIX = IMATRIX_FTYPES


def precision_warnings(src_type: str | None, target: str) -> list[str]:
    """Plain-words warnings when requantizing cannot give what the target's name promises."""
    if src_type is None or src_type in ("F32", "F16", "BF16"):
        return []
    try:
        src_q, dst_q = quality_of(src_type), quality_of(target)
    except ValueError:  # a type nobody published numbers for (the ternary ones): nothing to compare
        return []
    if src_q.kld > dst_q.kld:
        return [f"The source is already {src_type}: quantizing it to {target} cannot bring back what {src_type} "
                f"lost, and the file gets bigger. Start from the F16/BF16 original for a real {target}."]  # fmt: skip
    return [
        f"Requantizing from {src_type} adds its error to {target}'s; starting from F16/BF16 is slightly better."
    ]


def parse_keep(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``PATTERN=TYPE`` strings (llama-quantize ``--tensor-type``) → (pattern, ggml type) pairs.
    The pattern is a regular expression searched in each tensor's name, lower-cased as llama.cpp
    does; the first matching pair wins. Raises ``ConversionError`` naming the bad one."""
    out = []
    for spec in specs:
        pattern, sep, type_name = spec.partition("=")
        type_name = type_name.strip().upper()
        if not sep or not pattern.strip() or not type_name:
            raise ConversionError(
                f"--keep {spec!r} is not PATTERN=TYPE.", hint="For example: --keep attn_v=Q8_0"
            )
        if not ggml_types.known_type(type_name):
            raise ConversionError(f"--keep {spec!r}: {type_name} is not a ggml type.",
                                  hint="For example Q8_0, Q6_K, Q4_K, F16.")  # fmt: skip
        try:
            re.compile(pattern.lower())
        except re.error as exc:
            raise ConversionError(
                f"--keep {spec!r}: the pattern is not a regular expression ({exc})."
            ) from None
        out.append((pattern.strip().lower(), type_name))
    return tuple(out)


def quantize(
    src: Path,
    out: Path,
    *,
    to: str,
    imatrix: Path | None = None,
    keep: Sequence[tuple[str, str]] = (),
    n_threads: int = 0,
    on_progress: Callable[[QuantizeProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Path, list[str]]:
    """Quantize ``src`` to ``to``, weighing rounding errors by ``imatrix`` (an importance-matrix
    file) and giving tensors whose names match a ``keep`` pattern that type instead of the mix's;
    returns the output path and warnings about the source's precision."""
    from app.core.model.quant_recipe import requires_imatrix
    from app.core.model.source import model_from_gguf

    to = to.upper()
    if to not in QUANT_TYPES:
        raise ConversionError(
            f"{to} is not a quantization TailorLM can make.", hint="Choose one of: " + ", ".join(QUANT_TYPES)
        )
    child = start_job("app.engine.quantize_child", *([KEEP_FLAG] if keep else []),
                      what="llama.cpp's quantizer", hint="Nothing was kept.")  # fmt: skip
    tmp: Path | None = None
    values: Path | None = None
    try:
        model = model_from_gguf(src)  # a truncated or corrupt file fails here, with a clear message
        kv = matrix = None
        if imatrix is not None:
            from app.core.model.imatrix_file import imatrix_kv, read_imatrix  # numpy: only with a matrix

            matrix = read_imatrix(imatrix)  # a damaged file fails here, before any work
            _check_imatrix_fits(model, matrix, imatrix)
            kv = imatrix_kv(imatrix, matrix)
        elif needing := requires_imatrix(model, to, keep):
            raise ConversionError(
                f"{to} needs an importance matrix for {len(needing)} tensors of {src.name} (e.g. {needing[0]}).",
                hint=f"Make one with `tailorlm imatrix {src.name} --out {src.stem}.imatrix.gguf`, then pass --imatrix.",
            )
        warnings = precision_warnings(model.file_type, to)
        out = out.expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        check_disk_space(out.parent, predicted_bytes(model, to, imatrix=kv, overrides=keep))
        tmp = out.with_name(f".{out.name}.quantizing")
        tmp.unlink(missing_ok=True)
        request = P.Quantize(source=str(src), output=str(tmp), to=to, n_threads=n_threads, keep=tuple(keep))
        if matrix is not None and kv is not None:
            values = out.with_name(f".{out.name}.imatrix-values")
            request = _with_values(request, matrix, kv, values)
        for msg in run_job(child, request, result=P.Quantized, cancel=cancel,
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
        child.kill()  # a request that never came (a check failed); gone already after a job
        child.close()
        for leftover in (tmp, values):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return out, warnings


def _with_values(request: P.Quantize, matrix: Imatrix, kv: ImatrixKV, path: Path) -> P.Quantize:
    """``request`` with the importance matrix as llama-quantize's main hands it to the quantizer:
    each entry's ``sums / counts``, written one after another (float32) to ``path``."""
    entries = []
    try:
        with path.open("wb") as f:
            for name, v in matrix.values().items():
                f.write(v.astype("<f4", copy=False).tobytes())
                entries.append((name, int(v.size)))
    except OSError as e:
        raise ConversionError(f"Could not write the importance matrix for the quantizer beside {path.parent}: "
                              f"{e.strerror or e}.", hint="Free some space and try again.") from e  # fmt: skip
    return replace(request, imatrix_values=str(path), imatrix_entries=tuple(entries),
                   imatrix_kv=(kv.file, kv.dataset or "", kv.entries, kv.chunks))  # fmt: skip


def _check_imatrix_fits(model: ModelInfo, matrix: Imatrix, path: Path) -> None:
    """An importance matrix of another model would be applied silently (llama.cpp aborts only on a
    size mismatch, mid-file): refuse it up front, by name and width."""
    widths = {t.name: (t.shape[0], t.shape[2] if len(t.shape) > 2 else 1) for t in model.tensors}
    common = [n for n in matrix.entries if n in widths]
    if not common:
        raise ConversionError(f"{path.name} has no entry for any tensor of this model.",
                              hint="It was made for another model: make one for this model with `tailorlm imatrix`.")  # fmt: skip
    for name in common:
        n_mat, ne0 = matrix.entries[name].sums.shape
        if (ne0, n_mat) != widths[name]:
            raise ConversionError(f"{path.name} was made for another model: {name} is {ne0} wide there, "
                                  f"{widths[name][0]} here.", hint="Make one for this model with `tailorlm imatrix`.")  # fmt: skip


def _failure(log_tail: str, src: Path, out: Path) -> ConversionError:
    if "No space left" in log_tail or "ENOSPC" in log_tail:
        return ConversionError(f"The disk filled up while writing {out.name}; nothing was kept.",
                               hint="Free some space and try again.")  # fmt: skip
    lines = log_tail.splitlines()
    last = next((ln for ln in reversed(lines) if "error" in ln.lower() or "failed" in ln.lower()), "")
    return ConversionError(f"llama.cpp's quantizer failed on {src.name}{': ' + last[-200:] if last else ''}.",
                           hint="Nothing was kept.")  # fmt: skip

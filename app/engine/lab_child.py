"""The quantization lab's child: ``python -m app.engine.lab_child``, one :class:`LabQuantize` on
stdin, :class:`LabProgress` lines and one :class:`LabDone` (or ``Failed``) on its private stdout.

It reads evenly spaced rows of one tensor from a GGUF, turns them into float32 with ggml's own
``to_float`` (what llama-quantize quantizes from: a Q4_1 source is its dequantized values),
quantizes them with ``ggml_quantize_chunk`` — with the importance matrix's row for the tensor, as
llama-quantize passes it — and back, and measures the change (:mod:`app.core.model.quant_lab`).
ggml aborts the process on what it cannot handle, which is why this is a process of its own.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path

# llama.cpp's libraries load before numpy's: with a CUDA build of llama.cpp and numpy 2.5 (the H200
# machine's environment) the other order made llama_model_load_from_file crash (SIGSEGV, measured
# 2026-12-03 by tests/gpu/imatrix_device.sh); llama_cpp first worked.
import llama_cpp  # noqa: F401
import numpy as np

from app.core.errors import CorruptModelError, EngineError, TailorError
from app.core.model import quant_lab
from app.core.model.gguf_header import TensorInfo, read_gguf_file
from app.engine import ggml_quant
from app.engine import protocol as P
from app.engine.child import serve_one_job
from app.engine.host import physical_cores

IMATRIX_HINT = "Choose an importance-matrix file made for this model (`tailorlm imatrix MODEL`), or a type such as IQ4_XS."


def read_rows(path: str, name: str, max_weights: int) -> tuple[TensorInfo, np.ndarray, np.ndarray]:
    """(the tensor, the sampled row indices, those rows as float32) of the GGUF at ``path``."""
    header = read_gguf_file(path)
    t = next((t for t in header.tensors if t.name == name), None)
    if t is None:
        raise TailorError(f"{Path(path).name} has no tensor {name!r}.")
    if t.n_elements == 0 or not t.shape:
        raise TailorError(f"Tensor {name!r} of {Path(path).name} holds no weights to compare.")
    if t.type_name not in ggml_quant.TYPE_IDS:
        raise TailorError(f"{name} is stored as {t.type_name}, which this llama.cpp cannot read.")
    n_per_row = t.shape[0]
    n_rows = t.n_elements // n_per_row
    n_bytes = ggml_quant.row_bytes(t.type_name, n_per_row)
    start = header.data_offset_bytes + t.offset_bytes
    if start + n_rows * n_bytes > Path(path).stat().st_size:
        raise CorruptModelError(
            f"{Path(path).name} ends inside tensor {name}.", hint="Download the file again."
        )
    idx = quant_lab.sample_rows(n_rows, n_per_row, max_weights)
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(n_rows, n_bytes))
    try:
        raw = np.array(mm[idx])  # copies only the sampled rows
    finally:
        del mm  # release the mapping now (Windows keeps the file locked while it lives)
    return t, idx, ggml_quant.to_float(t.type_name, raw, n_per_row)


def importance_rows(imatrix_path: str, t: TensorInfo, idx: np.ndarray) -> tuple[np.ndarray | None, str]:
    """(each sampled row's importance per column, or None; a sentence about the matrix)."""
    from app.core.model.imatrix_file import read_imatrix

    imatrix = read_imatrix(imatrix_path)
    entry = imatrix.entries.get(t.name)
    file = Path(imatrix_path).name
    if entry is None:  # llama-imatrix sees only the matrices activations are multiplied with
        return None, f"{file} has no entry for {t.name}, so it is quantized without one, as llama.cpp would."
    values = entry.values()
    n_mat = math.prod(t.shape[2:]) if len(t.shape) > 2 else 1
    if values.shape != (n_mat, t.shape[0]):
        raise TailorError(f"{file}'s entry for {t.name} has {values.shape[1]} columns × {values.shape[0]} "
                          f"matrices; the tensor has rows of {t.shape[0]} in {n_mat}.",
                          hint="The importance matrix was made for another model.")  # fmt: skip
    rows_per_mat = t.shape[1] if len(t.shape) > 1 else 1
    n = imatrix.chunk_count
    seen = f"{n:,} chunk{'s' if n != 1 else ''}" if n else "an unknown number of chunks"
    text = f" of {', '.join(imatrix.datasets)}" if imatrix.datasets else ""
    return values[idx // rows_per_mat], f"Quantized with the importance matrix {file} ({seen}{text})."


def _round_trip(
    target: str, before: np.ndarray, weight: np.ndarray | None, threads: int
) -> ggml_quant.RoundTrip:
    """One round trip; rows with different importance rows (stacked experts) go in groups."""
    if weight is None or (weight == weight[0]).all():
        return ggml_quant.round_trip(target, before, None if weight is None else weight[0], n_threads=threads)
    quantized = np.empty((len(before), ggml_quant.row_bytes(target, before.shape[1])), dtype=np.uint8)
    after = np.empty_like(before)
    groups = np.unique(weight, axis=0, return_inverse=True)[1].ravel()
    for g in np.unique(groups):
        rows = groups == g
        rt = ggml_quant.round_trip(target, before[rows], weight[rows][0], n_threads=threads)
        quantized[rows], after[rows] = rt.quantized, rt.dequantized
    return ggml_quant.RoundTrip(quantized, after, quantized.shape[1])


def run(spec: P.LabQuantize, on_progress: Callable[[str], None]) -> quant_lab.LabReport:
    """The lab run itself; in the child (or in-process, for tests and debugging)."""
    t0 = time.perf_counter()
    target = spec.target
    if target not in ggml_quant.QUANTIZABLE:
        raise TailorError(
            f"ggml cannot quantize to {target}.", hint=f"Choose one of {', '.join(ggml_quant.QUANTIZABLE)}."
        )
    on_progress(f"Reading {spec.tensor}…")
    t, idx, before = read_rows(spec.path, spec.tensor, spec.max_weights)
    weight, note = importance_rows(spec.imatrix, t, idx) if spec.imatrix else (None, "")
    if weight is None and target in ggml_quant.LLAMA_NEEDS_IMATRIX:
        why = ("its quantizer stops the program" if target in ggml_quant.GGML_NEEDS_IMATRIX
               else "llama.cpp refuses to make it, as the result would be garbage")  # fmt: skip
        missing = f" ({note})" if note else ""
        raise TailorError(
            f"{target} needs an importance matrix: without one {why}{missing}.", hint=IMATRIX_HINT
        )
    block = ggml_quant.ggml_type(target).block_size
    if t.shape[0] % block:
        raise TailorError(
            f"{t.name} has rows of {t.shape[0]} weights, not whole {target} blocks of {block}.",
            hint="llama.cpp stores such tensors in a fallback type; choose a type with 32-weight blocks.",
        )
    threads = spec.n_threads or physical_cores()
    slow = (
        " (ggml builds this type's lookup tables first: several seconds)"
        if target in ggml_quant.SLOW_INIT
        else ""
    )
    on_progress(f"Quantizing {len(idx):,} rows to {target} with ggml{slow}…")
    rt = _round_trip(target, before, weight, threads)
    importance = None
    if weight is not None:
        plain = None
        if target not in ggml_quant.GGML_NEEDS_IMATRIX:
            on_progress(f"Quantizing to {target} without the importance matrix, to compare…")
            plain = ggml_quant.round_trip(target, before, None, n_threads=threads).dequantized
        importance = quant_lab.importance_report(before, rt.dequantized, weight, plain)
    on_progress("Working out the linear INT8, INT4 and INT2 schemes…")
    linear = quant_lab.linear_explainer(before)
    n_prev = quant_lab.PREVIEW_WEIGHTS
    return quant_lab.LabReport(
        path=spec.path, tensor=t.name, shape=t.shape, source_type=t.type_name, target_type=target,
        n_total=t.n_elements, n_sampled=before.size, n_rows_sampled=len(idx),
        bits_per_weight=ggml_quant.ggml_type(target).bits_per_weight,
        source_bits_per_weight=ggml_quant.ggml_type(t.type_name).bits_per_weight,
        stats=quant_lab.error_stats(before, rt.dequantized), hist=quant_lab.histograms(before, rt.dequantized),
        preview_before=tuple(float(v) for v in before[0, :n_prev]),
        preview_after=tuple(float(v) for v in rt.dequantized[0, :n_prev]),
        imatrix_note=note, importance=importance, linear=linear,
        quantized_sha256=hashlib.sha256(rt.quantized.tobytes()).hexdigest(),
        dequantized_sha256=hashlib.sha256(rt.dequantized.astype("<f4").tobytes()).hexdigest(),
        elapsed_s=time.perf_counter() - t0,
    )  # fmt: skip


def _handle(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    if not isinstance(request, P.LabQuantize):
        raise EngineError(f"The quantization lab got a {request.kind} request.")
    report = run(request, lambda stage: send(P.LabProgress(stage=stage)))
    return P.LabDone(report=report.to_dict())


if __name__ == "__main__":
    serve_one_job(_handle)

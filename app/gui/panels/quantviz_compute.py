"""What quantizing one tensor does to its weights, in numpy and without Qt (it runs on the thread
pool, and tests call it directly).

The tensor's rows are read from the file through a memory map (a sample of rows for big tensors,
so one comparison stays well under a second), turned into float32 — the file's own values, if it
is already quantized — then quantized to the chosen type and back with the `gguf` package's numpy
reference code (``gguf.quants``, a port of llama.cpp's ``ggml-quants.c`` reference functions).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import Cancelled, TailorError

# Types a user would choose, most precise first; only those gguf's numpy code can quantize are
# offered (it dequantizes every type, but as of gguf 0.17 quantizes none of the K- or I-quants).
CANDIDATE_TYPES = ("Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0", "IQ4_NL", "Q3_K", "Q2_K")
# 2^20 weights: gguf's numpy Q4_0 quantizes ~1.2 M weights in 20 ms and dequantizes in 15 ms on one
# laptop core (our measurement); reading sampled rows from disk costs more, so this keeps a
# comparison well under a second even for a 250 M-weight embedding.
MAX_SAMPLE_WEIGHTS = 1 << 20
HISTOGRAM_BINS = 160
# Outliers squeeze the histogram into a spike: the range covers the 0.1th to 99.9th percentile
# and the few weights outside land in the end bins.
RANGE_PERCENTILES = (0.1, 99.9)
# "Within 5 %": |after − before| ≤ 5 % of |before|. A weight near zero would count as wrong for
# any error at all, though it barely moves a dot product; so a weight smaller than a tenth of the
# tensor's RMS is judged against a tenth of the RMS instead.
WITHIN = 0.05
SMALL_WEIGHT_RMS_SHARE = 0.1


@dataclass(frozen=True)
class TensorChoice:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type_name: str
    n_elements: int


@dataclass(frozen=True)
class QuantComparison:
    """One tensor before and after a round trip through ``target_type``."""

    tensor: str
    file_type: str
    target_type: str
    n_sampled: int  # weights compared
    n_total: int  # weights in the tensor
    bin_edges: np.ndarray  # HISTOGRAM_BINS + 1 edges, shared by both histograms
    hist_before: np.ndarray
    hist_after: np.ndarray
    mae: float
    rmse: float
    rms: float  # RMS of the original weights, the scale the errors compare to
    within_share: float  # share of weights within 5 % of their original value
    bits_per_weight: float  # of the target type
    file_bits_per_weight: float  # of the type the file stores this tensor in


def _qtype(name: str) -> Any:
    from gguf.constants import GGMLQuantizationType

    return GGMLQuantizationType[name]


@cache
def supported_types() -> tuple[str, ...]:
    """The candidate types gguf's numpy code can quantize here (probed once with one 256-wide row)."""
    from gguf import quants

    ok = []
    for name in CANDIDATE_TYPES:
        try:
            quants.quantize(np.zeros((1, 256), dtype=np.float32), _qtype(name))
        except (NotImplementedError, KeyError, ValueError):
            continue
        ok.append(name)
    return tuple(ok)


def unsupported_types() -> tuple[str, ...]:
    return tuple(t for t in CANDIDATE_TYPES if t not in supported_types())


def list_tensors(path: str | Path) -> tuple[TensorChoice, ...]:
    """The tensors of a local GGUF, from its header (no weights are read), in natural order
    (``blk.2`` before ``blk.10``; a header's own order is often a plain string sort)."""
    from app.core.model.gguf_header import read_gguf_file
    from app.core.model.tensor_order import natural_sorted

    tensors = natural_sorted(read_gguf_file(path).tensors, key=lambda t: t.name)
    return tuple(TensorChoice(t.name, t.shape, t.type_name, t.n_elements) for t in tensors)


def read_rows(
    path: str | Path, name: str, *, max_weights: int = MAX_SAMPLE_WEIGHTS
) -> tuple[np.ndarray, int, str]:
    """(float32 rows, weights in the tensor, the file's type): every row, or evenly spaced rows
    up to ``max_weights`` weights, read through a memory map."""
    from gguf import quants

    from app.core.model import ggml_types
    from app.core.model.gguf_header import read_gguf_file

    header = read_gguf_file(path)
    t = next((t for t in header.tensors if t.name == name), None)
    if t is None:
        raise TailorError(f"{Path(path).name} has no tensor {name!r}.")
    if t.n_elements == 0 or not t.shape:  # llama.cpp's reader allows both; there is nothing to plot
        raise TailorError(f"Tensor {name!r} of {Path(path).name} holds no weights to compare.")
    row_len = t.shape[0]
    n_rows = t.n_elements // row_len
    row_bytes = ggml_types.row_bytes(t.type_name, row_len)
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=header.data_offset_bytes + t.offset_bytes,
                   shape=(n_rows, row_bytes))  # fmt: skip
    try:
        keep = max(1, min(n_rows, max_weights // row_len))
        idx = np.unique(np.linspace(0, n_rows - 1, keep).astype(np.int64))
        raw = np.array(mm[idx])  # copies only the sampled rows
    finally:
        del mm  # release the mapping now (Windows keeps the file locked while it lives)
    values = quants.dequantize(raw, _qtype(t.type_name)).astype(np.float32, copy=False)
    return values.reshape(len(idx), row_len), t.n_elements, t.type_name


def compare(
    path: str | Path,
    name: str,
    target_type: str,
    *,
    max_weights: int = MAX_SAMPLE_WEIGHTS,
    cancel: threading.Event | None = None,
) -> QuantComparison:
    """Quantize tensor ``name`` of the GGUF at ``path`` to ``target_type`` and back; measure the change."""
    from gguf import quants

    from app.core.model import ggml_types

    if target_type not in supported_types():
        raise TailorError(
            f"{target_type} cannot be computed here.", hint=f"Choose one of {', '.join(supported_types())}."
        )
    before, n_total, file_type = read_rows(path, name, max_weights=max_weights)
    block = ggml_types.block_size(target_type)
    if before.shape[1] % block:
        raise TailorError(
            f"{name} has rows of {before.shape[1]} weights, not whole {target_type} blocks of {block}.",
            hint="llama.cpp stores such tensors in a fallback type; choose a type with 32-weight blocks.",
        )
    if cancel is not None and cancel.is_set():
        raise Cancelled("Stopped.")
    qt = _qtype(target_type)
    after = quants.dequantize(quants.quantize(before, qt), qt).reshape(before.shape)
    b, a = before.ravel().astype(np.float64), after.ravel().astype(np.float64)
    err = np.abs(a - b)
    rms = float(np.sqrt(np.mean(b * b))) if b.size else 0.0
    floor = max(SMALL_WEIGHT_RMS_SHARE * rms, np.finfo(np.float32).tiny)
    within = float(np.mean(err <= WITHIN * np.maximum(np.abs(b), floor))) if b.size else 1.0
    lo, hi = np.percentile(b, RANGE_PERCENTILES) if b.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    hist_b, _ = np.histogram(np.clip(b, lo, hi), bins=edges)
    hist_a, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
    return QuantComparison(
        tensor=name, file_type=file_type, target_type=target_type, n_sampled=int(b.size), n_total=n_total,
        bin_edges=edges, hist_before=hist_b, hist_after=hist_a,
        mae=float(err.mean()) if b.size else 0.0, rmse=float(np.sqrt(np.mean(err * err))) if b.size else 0.0,
        rms=rms, within_share=within,
        bits_per_weight=ggml_types.bits_per_weight(target_type),
        file_bits_per_weight=ggml_types.bits_per_weight(file_type),
    )  # fmt: skip

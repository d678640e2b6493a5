"""The quantization lab's arithmetic, in numpy: what a round trip through a ggml type did to one
tensor's weights (histograms, errors), what an importance matrix protects, and the textbook linear
INT8/INT4/INT2 schemes computed on the same weights — scale and zero-point, symmetric and
asymmetric, the range from min-max, a percentile or a KL-divergence search.

The ggml round trip itself runs in a child process (:mod:`app.engine.lab_child`); it hands these
functions float32 rows and sends back a :class:`LabReport`, a few kilobytes whatever the tensor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import numpy as np

# 2^20 weights: reading, converting and round-tripping that many takes well under a second for
# every type but the IQ1/IQ2 family on 2 laptop cores (our measurement); a bigger tensor is
# sampled by evenly spaced whole rows (ggml quantizes each row on its own, so a row's bytes do
# not depend on which other rows were taken).
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
# "The most important columns": the top 1 % of a row's input columns by importance (at least
# one) — llama-imatrix's statistics typically put a few percent of the activation energy there.
TOP_COLUMN_SHARE = 0.01
TOP_COLUMNS_LISTED = 8
PREVIEW_WEIGHTS = 8  # the first weights of the first row, before and after, shown as numbers


def sample_rows(n_rows: int, row_len: int, max_weights: int = MAX_SAMPLE_WEIGHTS) -> np.ndarray:
    """Indices of the rows a lab run reads: all of them, or evenly spaced ones up to ``max_weights``."""
    keep = max(1, min(n_rows, max_weights // max(row_len, 1)))
    return np.unique(np.linspace(0, n_rows - 1, keep).astype(np.int64))


@dataclass(frozen=True)
class ErrorStats:
    """How far a round trip moved the weights."""

    mae: float
    rmse: float
    max_error: float
    rms: float  # RMS of the original weights, the scale the errors compare to
    within_share: float  # share of weights within 5 % of their original value


def error_stats(before: np.ndarray, after: np.ndarray) -> ErrorStats:
    b, a = before.ravel().astype(np.float64), after.ravel().astype(np.float64)
    if not b.size:
        return ErrorStats(0.0, 0.0, 0.0, 0.0, 1.0)
    err = np.abs(a - b)
    rms = float(np.sqrt(np.mean(b * b)))
    floor = max(SMALL_WEIGHT_RMS_SHARE * rms, float(np.finfo(np.float32).tiny))
    within = float(np.mean(err <= WITHIN * np.maximum(np.abs(b), floor)))
    return ErrorStats(float(err.mean()), float(np.sqrt(np.mean(err * err))), float(err.max()), rms, within)


@dataclass(frozen=True)
class Histograms:
    """Both histograms on one shared range; the weights outside it are counted in the end bins."""

    bin_edges: np.ndarray  # HISTOGRAM_BINS + 1 edges
    before: np.ndarray
    after: np.ndarray


def histograms(before: np.ndarray, after: np.ndarray, bins: int = HISTOGRAM_BINS) -> Histograms:
    b, a = before.ravel(), after.ravel()
    lo, hi = (float(v) for v in np.percentile(b, RANGE_PERCENTILES)) if b.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    hist_b, _ = np.histogram(np.clip(b, lo, hi), bins=edges)
    hist_a, _ = np.histogram(np.clip(a, lo, hi), bins=edges)
    return Histograms(edges, hist_b, hist_a)


@dataclass(frozen=True)
class Importance:
    """What an importance matrix protects: the error on the columns it ranks highest against the
    rest, with the matrix and — when the type can go without — without it."""

    top_columns: tuple[int, ...]  # the most important input columns, most important first
    top_share: float  # share of the total importance held by the top TOP_COLUMN_SHARE of columns
    n_top: int  # columns per row counted as "top"
    weighted_rmse: float  # the error weighted by importance, with the matrix
    top_rmse: float
    rest_rmse: float
    rmse: float  # plain, unweighted
    plain_weighted_rmse: float | None  # the same, quantized without the matrix; None: not possible
    plain_top_rmse: float | None
    plain_rest_rmse: float | None
    plain_rmse: float | None
    type_uses_it: bool  # False: the type's quantizer ignores importance (Q8_0, MXFP4, F16 …)


_Errors = tuple[float, float, float, float]


def _errors(before: np.ndarray, after: np.ndarray, weight: np.ndarray, top: np.ndarray) -> _Errors:
    """(importance-weighted RMSE, RMSE on the top columns, on the rest, plain RMSE)."""
    sq = (after.astype(np.float64) - before.astype(np.float64)) ** 2
    weighted = float(np.sqrt(np.sum(sq * weight) / max(float(np.sum(weight)), 1e-30)))
    top_rmse = float(np.sqrt(sq[top].mean())) if top.any() else 0.0
    rest_rmse = float(np.sqrt(sq[~top].mean())) if (~top).any() else 0.0
    return weighted, top_rmse, rest_rmse, float(np.sqrt(sq.mean()))


def importance_report(
    before: np.ndarray, after: np.ndarray, weight: np.ndarray, plain_after: np.ndarray | None
) -> Importance:
    """``weight``: each sampled row's importance per column, float (rows, n_per_row) — an expert's
    row of the matrix for stacked experts, the one vector repeated otherwise."""
    n_cols = before.shape[1]
    n_top = max(1, round(TOP_COLUMN_SHARE * n_cols))
    w = np.broadcast_to(weight, before.shape).astype(np.float64)
    order = np.argsort(-w, axis=1, kind="stable")[:, :n_top]
    top = np.zeros(before.shape, dtype=bool)
    np.put_along_axis(top, order, True, axis=1)
    mean_w = w.mean(axis=0)
    ranked = np.argsort(-mean_w, kind="stable")
    total = float(mean_w.sum())
    share = float(mean_w[ranked[:n_top]].sum() / total) if total > 0 else 0.0
    weighted, top_rmse, rest_rmse, rmse = _errors(before, after, w, top)
    plain: list[float | None] = [None] * 4
    if plain_after is not None:
        plain = list(_errors(before, plain_after, w, top))
    uses = plain_after is None or not np.array_equal(after, plain_after)
    return Importance(tuple(int(c) for c in ranked[:TOP_COLUMNS_LISTED]), share, n_top, weighted, top_rmse,
                      rest_rmse, rmse, plain[0], plain[1], plain[2], plain[3], uses)  # fmt: skip


# --- the linear INT8/INT4/INT2 explainer -------------------------------------------------------

LINEAR_BITS = (8, 4, 2)
PERCENTILE = 99.9  # the usual choice of percentile calibrators (NVIDIA pytorch-quantization's example)
# TensorRT's entropy calibrator: a 2048-bin histogram of |x|, a threshold per bin edge, the one
# whose clipped-and-quantized distribution is closest to the original in KL divergence (Migacz,
# "8-bit Inference with TensorRT", GTC 2017). We try KL_STEPS of the edges, evenly spaced.
KL_BINS = 2048
KL_STEPS = 512
KL_SMOOTHING = 1e-4  # mass moved to empty bins so the divergence stays finite (MXNet's calibrator)
LINEAR_BLOCK = 32  # weights per block of the per-block rows: ggml's Q8_0/Q4_0 block


@dataclass(frozen=True)
class LinearRow:
    """One way of quantizing the tensor linearly, and what it cost."""

    bits: int
    scheme: str  # "symmetric" (zero-point 0) | "asymmetric"
    calibration: str  # "min-max" | "percentile" | "KL divergence"
    granularity: str  # "tensor" | "block"
    scale: float  # for blocks: the median block's
    zero_point: int  # for blocks: the median block's
    range_lo: float | None  # the clipping range; None for blocks (each has its own)
    range_hi: float | None
    clipped_share: float  # weights outside the calibrated range, saturated to its ends
    mae: float
    rmse: float


def symmetric_params(threshold: float, bits: int) -> tuple[float, int]:
    """(scale, zero-point) mapping [-threshold, threshold] onto the levels ±(2^(b-1) - 1)."""
    return threshold / (2 ** (bits - 1) - 1), 0


def asymmetric_params(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """(scale, zero-point) mapping [lo, hi] onto the levels 0 … 2^b - 1. The range is widened to
    hold 0 (as PyTorch's observers do), so a zero weight stays exactly zero."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / (2**bits - 1)
    return scale, (round(-lo / scale) if scale > 0 else 0)


def fake_quantize(x: np.ndarray, scale: Any, zero_point: Any, bits: int, *, symmetric: bool) -> np.ndarray:
    """``x`` quantized to the levels and back; ``scale``/``zero_point`` broadcast against ``x`` (a
    number, or one per block); beyond the end levels it saturates. Rounds half to even, as
    PyTorch's fake_quantize."""
    qmin, qmax = (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric else (0, 2**bits - 1)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), x.shape)
    q = np.rint(np.divide(x, s, out=np.zeros(x.shape), where=s > 0)) + zero_point
    return cast(np.ndarray, (np.clip(q, qmin, qmax) - zero_point) * s)


def _smooth(d: np.ndarray) -> np.ndarray:
    zero = d == 0
    n_zero, n_nonzero = int(zero.sum()), int((~zero).sum())
    return np.where(zero, d + KL_SMOOTHING, d - KL_SMOOTHING * n_zero / max(n_nonzero, 1))


def kl_threshold(values: np.ndarray, bits: int, *, bins: int = KL_BINS) -> float:
    """The clipping threshold on |x| that TensorRT's entropy calibration picks for ``bits``: the
    histogram of |x| cut at each candidate edge (the cut-off mass added to the last bin) against
    the same bins merged into 2^(b-1) levels and spread back over the bins that held weights."""
    a = np.abs(values.ravel().astype(np.float64))
    amax = float(a.max()) if a.size else 0.0
    if amax == 0.0:
        return 0.0
    hist = np.histogram(a, bins=bins, range=(0.0, amax))[0].astype(np.float64)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = hist[i:].sum()
    n_q = 2 ** (bits - 1)
    best_i, best_kl = bins, np.inf
    for i in np.unique(np.linspace(n_q, bins, min(KL_STEPS, bins - n_q + 1)).astype(np.int64)):
        sliced = hist[:i]
        p = sliced.copy()
        p[-1] += tail[i]
        edges = np.linspace(0, i, n_q + 1).astype(np.int64)
        sums = np.add.reduceat(sliced, edges[:-1])
        held = np.add.reduceat((sliced > 0).astype(np.float64), edges[:-1])
        spread = np.divide(sums, held, out=np.zeros(n_q), where=held > 0)
        q = np.where(sliced > 0, np.repeat(spread, np.diff(edges)), 0.0)
        if q.sum() == 0:
            continue
        ps, qs = _smooth(p), _smooth(q)
        ps, qs = ps / ps.sum(), qs / qs.sum()
        m = ps > 0
        kl = float(np.sum(ps[m] * np.log(ps[m] / qs[m])))
        if kl < best_kl:
            best_i, best_kl = int(i), kl
    return best_i * amax / bins


def _row(x: np.ndarray, bits: int, sym: bool, calibration: str, granularity: str, scale: Any, zp: Any,
         lo: float | None, hi: float | None) -> LinearRow:  # fmt: skip
    """``lo``/``hi``: the calibrated range (None per block, where min-max covers every block)."""
    err = fake_quantize(x, scale, zp, bits, symmetric=sym) - x
    clipped = float(np.mean((x < lo) | (x > hi))) if lo is not None and hi is not None else 0.0
    return LinearRow(bits, "symmetric" if sym else "asymmetric", calibration, granularity,
                     float(np.median(scale)), int(np.median(zp)), lo, hi, clipped,
                     float(np.abs(err).mean()), float(np.sqrt(np.mean(err * err))))  # fmt: skip


def linear_explainer(values: np.ndarray, bits: tuple[int, ...] = LINEAR_BITS) -> tuple[LinearRow, ...]:
    """Every textbook way to quantize ``values`` (float rows) linearly: symmetric and asymmetric,
    the range by min-max, percentile or KL divergence, per tensor; plus min-max per block of 32."""
    x = values.astype(np.float64)
    flat = x.ravel()
    if not flat.size:
        return ()
    amax, xmin, xmax = float(np.abs(flat).max()), float(flat.min()), float(flat.max())
    t_pct = float(np.percentile(np.abs(flat), PERCENTILE))
    lo_pct, hi_pct = (float(v) for v in np.percentile(flat, [(100 - PERCENTILE) / 2, (100 + PERCENTILE) / 2]))
    blocks = x.reshape(-1, LINEAR_BLOCK) if x.shape[-1] % LINEAR_BLOCK == 0 else None
    rows: list[LinearRow] = []
    for b in bits:
        t_kl = kl_threshold(flat, b)
        for calibration, t, lo, hi in (("min-max", amax, xmin, xmax), ("percentile", t_pct, lo_pct, hi_pct),
                                       ("KL divergence", t_kl, max(xmin, -t_kl), min(xmax, t_kl))):  # fmt: skip
            s, z = symmetric_params(t, b)
            rows.append(_row(flat, b, True, calibration, "tensor", s, z, -t, t))
            s, z = asymmetric_params(lo, hi, b)
            rows.append(_row(flat, b, False, calibration, "tensor", s, z, min(lo, 0.0), max(hi, 0.0)))
        if blocks is not None:
            s_sym = np.abs(blocks).max(axis=1, keepdims=True) / (2 ** (b - 1) - 1)
            rows.append(_row(blocks, b, True, "min-max", "block", s_sym, 0, None, None))
            lo_b, hi_b = (
                np.minimum(blocks.min(axis=1, keepdims=True), 0),
                np.maximum(blocks.max(axis=1, keepdims=True), 0),
            )
            s_asym = (hi_b - lo_b) / (2**b - 1)
            z_asym = np.rint(np.divide(-lo_b, s_asym, out=np.zeros_like(lo_b), where=s_asym > 0))
            rows.append(_row(blocks, b, False, "min-max", "block", s_asym, z_asym, None, None))
    return tuple(rows)


@dataclass(frozen=True)
class LabReport:
    """One lab run: a tensor's sampled rows through ggml's ``target_type`` and back."""

    path: str
    tensor: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    source_type: str
    target_type: str
    n_total: int  # weights in the tensor
    n_sampled: int  # weights compared
    n_rows_sampled: int
    bits_per_weight: float  # of the target type, from ggml's block size
    source_bits_per_weight: float
    stats: ErrorStats
    hist: Histograms
    preview_before: tuple[float, ...]
    preview_after: tuple[float, ...]
    imatrix_note: str  # one sentence on the importance matrix, "" when none was involved
    importance: Importance | None
    linear: tuple[LinearRow, ...]
    # Hashes of the sampled rows, in row order: the bytes ggml wrote and the float32 they give.
    quantized_sha256: str
    dequantized_sha256: str
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays as lists."""
        out = asdict(self)
        out["hist"] = {k: v.tolist() for k, v in out["hist"].items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabReport:
        """The inverse of :meth:`to_dict`, checking the shape of what came over the pipe."""
        d = dict(data)
        d["shape"] = tuple(int(x) for x in d["shape"])
        d["stats"] = ErrorStats(**d["stats"])
        h = d["hist"]
        d["hist"] = Histograms(np.asarray(h["bin_edges"], dtype=np.float64),
                               np.asarray(h["before"], dtype=np.int64), np.asarray(h["after"], dtype=np.int64))  # fmt: skip
        d["preview_before"] = tuple(float(x) for x in d["preview_before"])
        d["preview_after"] = tuple(float(x) for x in d["preview_after"])
        if d["importance"] is not None:
            imp = dict(d["importance"])
            imp["top_columns"] = tuple(int(c) for c in imp["top_columns"])
            d["importance"] = Importance(**imp)
        d["linear"] = tuple(LinearRow(**row) for row in d["linear"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

"""What the quantization panel shows, as text, from a lab report — the view-model between
:class:`~app.core.model.quant_lab.LabReport` and the widgets; no Qt, so tests read it directly.

Also the panel's choices: a model's tensors grouped by layer (from its header, no weights read) and
the importance-matrix files lying beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.core.model.quant_lab import TOP_COLUMN_SHARE, LabReport, LinearRow

OUTSIDE_LAYERS = "Outside the layers"  # embeddings, the output layer, final norms
MAX_IMATRIX_FILES = 20  # beside one model; more is a download folder, not a model's companions
LINEAR_COLUMNS = (
    "Bits",
    "Scheme",
    "Range by",
    "Scale per",
    "Scale",
    "Zero-point",
    "Range",
    "Clipped",
    "MAE",
    "RMSE",
)
IMPORTANCE_COLUMNS = ("", "With the matrix", "Without it")
IMPORTANCE_EMPTY = (
    "Choose an importance matrix to see which weights it protects: ggml weighs each column's rounding "
    "error by how strongly that column is used (the mean squared activation it sees)."
)
LINEAR_INTRO = (
    "The textbook linear schemes on the same weights. Symmetric: scale = max|x| / (2^(b−1) − 1), "
    "zero-point 0. Asymmetric: scale = (max − min) / (2^b − 1), zero-point = round(−min / scale). "
    "The range comes from the extremes (min-max), the 99.9th percentile, or TensorRT's search for the "
    "clipping threshold whose quantized histogram is closest in KL divergence; “block” rows give each "
    "32 weights their own min-max scale, as ggml's types do."
)


@dataclass(frozen=True)
class TensorChoice:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    type_name: str
    n_elements: int

    @property
    def label(self) -> str:
        shape = " × ".join(str(d) for d in reversed(self.shape))  # rows × row length, as people write it
        return f"{self.name}   {shape}   {self.type_name}"


def list_tensors(path: str | Path) -> tuple[TensorChoice, ...]:
    """The tensors of a local GGUF, from its header (no weights are read), in natural order
    (``blk.2`` before ``blk.10``; a header's own order is often a plain string sort)."""
    from app.core.model.gguf_header import read_gguf_file
    from app.core.model.tensor_order import natural_sorted

    tensors = natural_sorted(read_gguf_file(path).tensors, key=lambda t: t.name)
    return tuple(TensorChoice(t.name, t.shape, t.type_name, t.n_elements) for t in tensors)


def type_tip(name: str) -> str:
    """A target type's tooltip: its size and whether it needs an importance matrix."""
    from app.core.model import ggml_types
    from app.engine.lab import LLAMA_NEEDS_IMATRIX

    bits = f"{ggml_types.bits_per_weight(name):g} bits per weight" if ggml_types.known_type(name) else name
    return bits + ("; needs an importance matrix" if name in LLAMA_NEEDS_IMATRIX else "")


def group_name(tensor: str) -> str:
    from app.core.model.info import layer_of

    layer = layer_of(tensor)
    return f"Layer {layer}" if layer is not None else OUTSIDE_LAYERS


def by_layer(tensors: tuple[TensorChoice, ...]) -> dict[str, list[TensorChoice]]:
    """Layer 0, Layer 1, … then the tensors outside the layers; each in the given order."""
    groups: dict[str, list[TensorChoice]] = {}
    for t in tensors:
        groups.setdefault(group_name(t.name), []).append(t)
    outside = groups.pop(OUTSIDE_LAYERS, None)
    return {**groups, OUTSIDE_LAYERS: outside} if outside else groups


def imatrix_candidates(model: str | Path) -> list[Path]:
    """Importance-matrix files beside ``model`` (by name: llama-imatrix's ``imatrix.gguf``,
    ``*.imatrix``, ``*.imatrix.dat`` as model publishers ship them)."""
    folder = Path(model).parent
    try:
        found = [p for p in folder.iterdir() if "imatrix" in p.name.lower() and p.is_file()]
    except OSError:
        return []
    return sorted(found)[:MAX_IMATRIX_FILES]


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def summary(r: LabReport) -> str:
    """One paragraph for the line under the plot (rich text)."""
    rel = r.stats.rmse / r.stats.rms if r.stats.rms else 0.0
    text = (
        f"<b>{r.tensor}</b>: {r.source_type} → {r.target_type} through ggml, {r.bits_per_weight:g} bits per weight. "
        f"RMSE {r.stats.rmse:.3g} ({100 * rel:.1f} % of the weights' RMS), largest error {r.stats.max_error:.3g}; "
        f"{100 * r.stats.within_share:.1f} % of weights stay within 5 % of their value."
    )  # fmt: skip
    if r.source_type == r.target_type:
        text += " This is the file's own type: the round trip gives back the file's values."
    if r.imatrix_note:
        text += " " + r.imatrix_note
    return text


def stats_rows(r: LabReport) -> list[tuple[str, str]]:
    """The round-trip table: (what, value)."""
    shape = " × ".join(str(d) for d in reversed(r.shape))
    sample = (f"all {r.n_total:,}" if r.n_sampled == r.n_total
              else f"{r.n_sampled:,} of {r.n_total:,} ({r.n_rows_sampled:,} evenly spaced rows)")  # fmt: skip
    rel = r.stats.rmse / r.stats.rms if r.stats.rms else 0.0
    before = ", ".join(f"{v:.4g}" for v in r.preview_before)
    after = ", ".join(f"{v:.4g}" for v in r.preview_after)
    return [
        ("Tensor", f"{r.tensor} ({shape})"),
        ("In the file", f"{r.source_type}, {r.source_bits_per_weight:g} bits per weight"),
        ("Quantized to", f"{r.target_type}, {r.bits_per_weight:g} bits per weight ({r.bits_per_weight / 8:.3g} bytes)"),
        ("Weights compared", sample),
        ("Mean absolute error (MAE)", _g(r.stats.mae)),
        ("Root-mean-square error (RMSE)", f"{r.stats.rmse:.3g} ({100 * rel:.1f} % of the weights' RMS {r.stats.rms:.3g})"),
        ("Largest error", _g(r.stats.max_error)),
        ("Within 5 % of their value", _pct(r.stats.within_share)),
        ("First weights before", before),
        ("… and after", after),
        ("ggml's bytes (SHA-256)", r.quantized_sha256[:16] + "…"),
        ("Time", f"{r.elapsed_s:.2f} s"),
    ]  # fmt: skip


def _change(new: float, old: float) -> str:
    """ "31 % lower", "4 % higher", "about the same" (within 1 %)."""
    change = 100 * (new / old - 1)
    return (
        "about the same" if abs(change) < 1 else f"{abs(change):.0f} % {'higher' if change > 0 else 'lower'}"
    )


def importance_text(r: LabReport) -> str:
    imp = r.importance
    if imp is None:
        return r.imatrix_note or IMPORTANCE_EMPTY
    cols = ", ".join(str(c) for c in imp.top_columns)
    text = (f"The most important {100 * TOP_COLUMN_SHARE:g} % of input columns ({imp.n_top} per row) hold "
            f"{100 * imp.top_share:.1f} % of the importance; the first are columns {cols}.")  # fmt: skip
    if not imp.type_uses_it:
        return text + f" {r.target_type}'s quantizer takes no importance: the bytes are the same without it."
    if imp.plain_top_rmse is None:
        return text + f" ggml cannot make {r.target_type} without the matrix, so there is nothing to compare."
    if imp.plain_top_rmse and imp.plain_rest_rmse:
        text += (f" With the matrix the error on them is {_change(imp.top_rmse, imp.plain_top_rmse)}, "
                 f"on the other columns {_change(imp.rest_rmse, imp.plain_rest_rmse)}.")  # fmt: skip
    return text


def importance_rows(r: LabReport) -> list[tuple[str, str, str]]:
    imp = r.importance
    if imp is None:
        return []
    return [
        ("Error weighted by importance (RMSE)", _g(imp.weighted_rmse), _g(imp.plain_weighted_rmse)),
        (
            f"Error on the top {100 * TOP_COLUMN_SHARE:g} % of columns",
            _g(imp.top_rmse),
            _g(imp.plain_top_rmse),
        ),
        ("Error on the other columns", _g(imp.rest_rmse), _g(imp.plain_rest_rmse)),
        ("Plain RMSE", _g(imp.rmse), _g(imp.plain_rmse)),
    ]


def _linear_row(x: LinearRow) -> tuple[str, ...]:
    span = "own per block" if x.range_lo is None else f"{_g(x.range_lo)} … {_g(x.range_hi)}"
    per = "block of 32" if x.granularity == "block" else "tensor"
    scale = f"{x.scale:.3g}" + (" (median)" if x.granularity == "block" else "")
    return (f"INT{x.bits}", x.scheme, x.calibration, per, scale, str(x.zero_point), span,
            _pct(x.clipped_share), _g(x.mae), _g(x.rmse))  # fmt: skip


def linear_rows(r: LabReport) -> list[tuple[str, ...]]:
    return [_linear_row(x) for x in r.linear]


def ggml_line(r: LabReport) -> str:
    """ggml's own result beside the textbook rows."""
    return (f"For comparison, ggml's {r.target_type} ({r.bits_per_weight:g} bits per weight, scales included) "
            f"on the same {r.n_sampled:,} weights: MAE {r.stats.mae:.3g}, RMSE {r.stats.rmse:.3g}.")  # fmt: skip

"""What the Quality ladder panel shows, without Qt: the progress line, the chart's units and points,
the table's rows and the sentence about what the importance matrix gains — from the engine's
``LadderProgress``/``ImatrixProgress`` and the rungs (``app.core.advice.ladder.Rung``). And the
panel's one long job: make the matrix when asked, then measure the ladder."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.units import GIB, MIB, format_bytes

if TYPE_CHECKING:
    from app.core.advice.ladder import Rung
    from app.engine.ladder import LadderResult
    from app.gui.panels.convert_imatrix import MatrixChoice

NO_GAINS = "Measure with an importance matrix (above) to see what it gains on each type."
COLUMNS = ("Quantization", "Size", "Bits/weight", "Mean KLD", "KLD p99", "Top-1 same", "On the front")
STAGE_WORDS = {"quantize": "quantizing", "score": "scoring"}
# Of a rung's time on 2 cores, quantizing SmolLM2 takes ~4 s and scoring it ~8 s on the built-in
# text (our measurement, tests/engine/test_ladder.py's rungs): the bar gives each its share.
QUANTIZE_SHARE = 0.35
MATRIX_SHARE = 0.15  # of the bar, when the matrix is made first


def progress_text(p: Any) -> str:
    """ "3/12 Q3_K_S + imatrix — scoring 40 %", or the matrix's "Importance matrix — chunk 2 of 25"."""
    if hasattr(p, "chunks_done"):
        return f"Importance matrix — chunk {p.chunks_done} of {p.n_chunks} ({p.tok_s:,.0f} tokens/s)"
    return f"{p.step}/{p.n_steps} {p.name} — {STAGE_WORDS.get(p.stage, p.stage)} {100 * p.fraction:.0f} %"


def progress_fraction(p: Any, *, with_matrix: bool) -> float:
    """The whole job's fraction after ``p``: the matrix first (when made), then rung after rung."""
    start = MATRIX_SHARE if with_matrix else 0.0
    if hasattr(p, "chunks_done"):
        return MATRIX_SHARE * p.chunks_done / max(1, p.n_chunks)
    within = (
        QUANTIZE_SHARE * p.fraction
        if p.stage == "quantize"
        else QUANTIZE_SHARE + (1 - QUANTIZE_SHARE) * p.fraction
    )
    return start + (1 - start) * (p.step - 1 + within) / max(1, p.n_steps)


def size_unit(sizes_bytes: Sequence[int]) -> tuple[str, float]:
    """The chart's x unit: GiB once a rung reaches 1 GiB, else MiB."""
    return ("GiB", float(GIB)) if max(sizes_bytes, default=0) >= GIB else ("MiB", float(MIB))


def log_scale(rungs: Sequence[Rung]) -> bool:
    """Divergences span orders of magnitude (Q8_0 ~0.001, IQ2 ~0.5): log, when every one is above 0."""
    return bool(rungs) and all(_known(r.kld_mean) and r.kld_mean > 0 for r in rungs)


@dataclass(frozen=True)
class Series:
    xs: tuple[float, ...]  # size in the unit
    ys: tuple[float, ...]  # mean KLD
    names: tuple[str, ...]


def series(rungs: Sequence[Rung], unit: float) -> tuple[Series, Series, Series]:
    """(plain, with the matrix, the front line through the front's points by size); rungs whose
    divergence is unknown are left out."""

    def of(chosen: list[Rung]) -> Series:
        return Series(tuple(r.size_bytes / unit for r in chosen), tuple(r.kld_mean for r in chosen),
                      tuple(r.name for r in chosen))  # fmt: skip

    known = [r for r in rungs if _known(r.kld_mean)]
    front = sorted((r for r in known if r.pareto), key=lambda r: r.size_bytes)
    return of([r for r in known if not r.imatrix]), of([r for r in known if r.imatrix]), of(front)


def rows(rungs: Sequence[Rung]) -> list[tuple[str, ...]]:
    """The table, one row per rung, as :data:`COLUMNS`; "—" for what was not measured."""
    return [
        (r.name, format_bytes(r.size_bytes), _num(r.bits_per_weight, "{:.2f}"), _num(r.kld_mean, "{:.4f}"),
         _num(r.kld_p99, "{:.3f}"), _num(100 * r.top1_agreement, "{:.1f} %"), "yes" if r.pareto else "")
        for r in rungs
    ]  # fmt: skip


def gains_sentence(rungs: Sequence[Rung]) -> str:
    """ "The importance matrix removes 38 % of Q2_K's divergence and 12 % of Q4_K_M's." — for the
    types measured both ways; "" when none was."""
    from app.core.advice.ladder import imatrix_gains

    gains = imatrix_gains(rungs)
    removes = [f"{100 * g:.0f} % of {q}'s" for q, g in gains.items() if g >= 0]
    adds = [f"{100 * -g:.0f} % to {q}'s" for q, g in gains.items() if g < 0]
    parts = []
    if removes:
        parts.append("removes " + _and(removes, first_noun=" divergence"))
    if adds:
        parts.append("adds " + _and(adds, first_noun=" divergence"))
    return f"The importance matrix {' and '.join(parts)}." if parts else ""


def summary(result: LadderResult) -> str:
    """The line under the table: what was measured, what was left out, and where the numbers go."""
    lines = [f"{len(result.rungs)} quantizations of {Path(result.source).name} measured against its "
             f"{result.reference_quant}; on the front, nothing else is both smaller and closer to it."]  # fmt: skip
    if result.skipped:
        lines.append(f"Left out, they need an importance matrix: {', '.join(result.skipped)}.")
    lines.append("The Advisor plans with these measurements for this model from now on.")
    return " ".join(lines)


def read_text(path: Path) -> str:
    """A text to score on, chosen by the user."""
    from app.core.errors import TailorError

    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TailorError(
            f"{path.name} cannot be read as UTF-8 text ({exc}).",
            hint="Choose a plain-text file, or score on the built-in text.",
        ) from None


def run_ladder(
    source: Path,
    types: Sequence[str],
    matrix: MatrixChoice,
    *,
    text: str | None = None,
    n_ctx: int = 512,
    on_progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> LadderResult:
    """Make the importance matrix first when ``matrix`` says "make" (where `tailorlm ladder
    --imatrix auto` keeps it), then measure the ladder (:func:`app.engine.ladder.quality_ladder`)."""
    from app.engine.ladder import quality_ladder
    from app.gui.panels.convert_imatrix import ladder_matrix_path, make_matrix

    path = matrix.path if matrix.kind == "file" else None
    if matrix.kind == "make":
        path = make_matrix(source, ladder_matrix_path(source), matrix, on_progress=on_progress, cancel=cancel)
    return quality_ladder(source, types=types, imatrix=path, text=text, n_ctx=n_ctx, on_progress=on_progress,
                          cancel=cancel)  # fmt: skip


def _known(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _num(x: float | None, fmt: str) -> str:
    return fmt.format(x) if _known(x) else "—"


def _and(items: list[str], *, first_noun: str) -> str:
    """ "38 % of Q2_K's divergence, 12 % of Q3_K_S's and 5 % of Q4_K_M's": the noun once, after the first."""
    items = [items[0] + first_noun, *items[1:]]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

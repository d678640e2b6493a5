"""The measured quality ladder: quantize one model to several types — plain, and with an importance
matrix — score each against the source on a text (mean KL divergence, as ``tailorlm quality``),
and keep the numbers where the advisor finds them (:mod:`app.core.advice.measured_quality`), so
it plans with this model's losses instead of the published Llama-3-8B ones.

Each rung is a quantization (:func:`app.engine.quantize.quantize`) and a scoring
(:func:`app.engine.quality_eval.evaluate`), both in child processes; the quantized files are
deleted once scored unless the caller keeps them. One progress callback, one cancel.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.advice.ladder import DEFAULT_LADDER, Rung, imatrix_gains, mark_front
from app.core.advice.measured_quality import record
from app.core.errors import ConversionError
from app.engine.quality_eval import default_text, evaluate
from app.engine.quantize import NEEDS_IMATRIX, QUANT_TYPES, quantize


@dataclass(frozen=True)
class LadderProgress:
    step: int  # 1-based rung being worked on
    n_steps: int
    name: str  # "Q3_K_S + imatrix"
    stage: str  # "quantize" | "score"
    fraction: float  # of the stage


@dataclass
class LadderResult:
    source: str
    reference_quant: str
    imatrix: str | None
    rungs: list[Rung]
    skipped: list[str] = field(default_factory=list)  # types that need a matrix when none was given
    kept: list[str] = field(default_factory=list)  # quantized files kept on disk

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "reference_quant": self.reference_quant, "imatrix": self.imatrix,
                "rungs": [r.to_dict() for r in self.rungs], "imatrix_gain": imatrix_gains(self.rungs),
                "skipped": self.skipped, "kept": self.kept}  # fmt: skip


def plan_rungs(
    types: Sequence[str],
    imatrix: Path | None,
    needs_matrix: Callable[[str], bool] = NEEDS_IMATRIX.__contains__,
) -> tuple[list[tuple[str, bool]], list[str]]:
    """(type, with the matrix) pairs to measure, and the types left out for want of a matrix.
    ``needs_matrix(type)``: whether llama.cpp refuses the type without one (for the model at hand:
    narrow rows fall back to IQ4_NL, which needs none)."""
    rungs, skipped = [], []
    for quant in types:
        if quant not in QUANT_TYPES:
            raise ConversionError(f"{quant} is not a quantization TailorLM can make.")
        if not needs_matrix(quant):
            rungs.append((quant, False))
        if imatrix is not None:
            rungs.append((quant, True))
        elif needs_matrix(quant):
            skipped.append(quant)
    return rungs, skipped


def quality_ladder(
    source: Path,
    *,
    types: Sequence[str] = DEFAULT_LADDER,
    imatrix: Path | None = None,
    text: str | None = None,
    n_ctx: int = 512,
    n_threads: int = 0,
    keep_dir: Path | None = None,
    on_progress: Callable[[LadderProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> LadderResult:
    """Measure ``types`` of ``source`` (plain where allowed, and with ``imatrix`` when given)."""
    from app.core.model.quant_recipe import requires_imatrix
    from app.core.model.source import model_from_gguf

    model = model_from_gguf(source)
    reference = model.file_type or source.stem
    steps, skipped = plan_rungs(types, imatrix, lambda quant: bool(requires_imatrix(model, quant)))
    if not steps:
        raise ConversionError("Nothing to measure: every type asked for needs an importance matrix.",
                              hint="Make one with `tailorlm imatrix`, or pass --imatrix auto.")  # fmt: skip
    text = default_text() if text is None else text
    report = on_progress or (lambda p: None)
    rungs: list[Rung] = []
    kept: list[str] = []
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
    folder = (
        contextlib.nullcontext(str(keep_dir))
        if keep_dir
        else tempfile.TemporaryDirectory(prefix="tailorlm-ladder-")
    )
    with folder as tmp:
        for i, (quant, with_matrix) in enumerate(steps, 1):
            name = f"{quant} + imatrix" if with_matrix else quant
            suffix = "-imat" if with_matrix else ""
            out = Path(tmp) / f"{source.stem}-{quant}{suffix}.gguf"
            t0 = time.perf_counter()
            quantize(source, out, to=quant, imatrix=imatrix if with_matrix else None, n_threads=n_threads,
                     cancel=cancel, on_progress=lambda p, i=i, name=name: report(
                         LadderProgress(i, len(steps), name, "quantize", p.fraction)))  # fmt: skip
            t1 = time.perf_counter()
            try:
                score = evaluate(source, out, text, n_ctx=n_ctx, n_threads=n_threads, cancel=cancel,
                                 on_progress=lambda f, i=i, name=name: report(
                                     LadderProgress(i, len(steps), name, "score", f)))  # fmt: skip
            finally:
                size = out.stat().st_size if out.exists() else 0
                if keep_dir is None:
                    out.unlink(missing_ok=True)
            if keep_dir is not None:
                kept.append(str(out))
            record(model, reference, name, score.to_dict())
            rungs.append(Rung(quant, with_matrix, size, 8 * size / max(1, model.n_params), score.kld_mean,
                              score.kld_p99, score.top1_agreement, score.ppl_change, t1 - t0,
                              time.perf_counter() - t1))  # fmt: skip
    return LadderResult(
        str(source), reference, str(imatrix) if imatrix else None, mark_front(rungs), skipped, kept
    )

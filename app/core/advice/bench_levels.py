"""What a benchmark of several files measures (the Advisor's "Benchmark every level", as
``tailorlm bench --quant all`` does): for each GGUF file, the chat planner's plan on this machine —
the plan the benchmark loads, exactly as a chat would — or, for a file whose plan does not fit or
whose header cannot be read, why it is skipped, in words.

The files come from :func:`app.core.library.levels.levels_of` (above this package, so its caller
hands them over); the measuring itself is the engine's (:func:`app.engine.bench.bench_plan`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.core.advice.chat_plan import ChatOverrides, ChatPlan, plan_chat
from app.core.advice.naming import display_name
from app.core.advice.recommend import Budget
from app.core.errors import TailorError
from app.core.model.source import model_from_gguf


@dataclass(frozen=True)
class LevelPlan:
    """One file: the plan to measure, or why it is not measured."""

    path: Path
    quant: str  # the file's quantization; "?" when its header could not be read
    model_name: str  # as the advisor names it (what the profile keeps), never a path
    planned: ChatPlan | None  # None: skipped
    skipped: str = ""  # why it is skipped: the plan does not fit here, or the file is unreadable

    @property
    def to_measure(self) -> bool:
        return self.planned is not None


def plan_levels(
    paths: Iterable[Path], budget: Budget, overrides: ChatOverrides | None = None
) -> list[LevelPlan]:
    """Each file's plan on ``budget`` with the user's ``overrides`` (one context and GPU split for
    every level, as ``tailorlm bench --ctx N --quant all``), in the order given. A plan that does
    not fit is skipped, ``overrides.force`` or not: a benchmark measures plans that run."""
    overrides = overrides or ChatOverrides()
    out = []
    for path in paths:
        try:
            model = model_from_gguf(path)
        except TailorError as exc:
            out.append(LevelPlan(path, "?", path.stem, None, exc.user_message()))
            continue
        quant, name = model.file_type or "?", display_name(model)
        try:
            planned = plan_chat(model, budget, overrides)
        except TailorError as exc:  # a setting the planner refuses (a context below 1 token)
            out.append(LevelPlan(path, quant, name, None, exc.user_message()))
            continue
        if not planned.fits:  # the reason, and the nearest plan of the file that fits
            out.append(LevelPlan(path, quant, name, None, f"{planned.refusal()} {planned.suggestion()}"))
            continue
        out.append(LevelPlan(path, planned.quant, name, planned))
    return out

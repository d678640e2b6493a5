"""Every GGUF model of a Hub repo sized up for this machine from its remote headers (a few MB
each, no weights), and the one the advisor would download."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.advice.quality import quality_of
from app.core.advice.recommend import Budget, Plan, best_plan, pick_plan
from app.core.hub.repo import RepoGGUF
from app.core.model.info import ModelInfo
from app.core.model.remote import remote_model


@dataclass(frozen=True)
class FilePlan:
    """One GGUF model of a repo, sized up for this machine from its remote header."""

    repo_file: RepoGGUF
    model: ModelInfo
    plan: Plan


def plan_files(repo_id: str, files: list[RepoGGUF], budget: Budget, n_ctx: int) -> list[FilePlan]:
    """Every GGUF model in the repo with the advisor's best plan for it on ``budget``."""
    out = []
    for rf in files:
        model = remote_model(repo_id, rf.file)
        quant = model.file_type or rf.file.quant or "?"
        out.append(FilePlan(rf, model, best_plan(model, quant, n_ctx, budget)))
    return out


def recommended_file(planned: list[FilePlan]) -> FilePlan | None:
    """The file the advisor would pick: best quality that fits, smaller among near-equals."""
    plans = [fp.plan for fp in planned]
    with_dom = []
    for fp in planned:
        worse = any(o.plan.file_bytes <= fp.plan.file_bytes
                    and quality_of(o.plan.quant).kld < quality_of(fp.plan.quant).kld for o in planned)  # fmt: skip
        with_dom.append((fp, worse))
    candidates = [fp.plan for fp, dominated in with_dom if not dominated] or plans
    best = pick_plan(candidates)
    return next((fp for fp in planned if fp.plan is best), None)

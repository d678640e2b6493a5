"""A plan beside what happened when it ran here (issue 19): the newest recorded profile of the same
file with the plan's settings — quantization, context, KV type, GPU layers, experts in RAM — and,
for a plan never run, the correction its nearest run of the same file implies.

Threads and flash attention are not part of the match: the engine picks them itself for a plan, so
a plan's runs are the runs of its settings whatever they were.

The correction: a run of the same file and quantization with other settings (another context,
another GPU split) measured more or less memory than its prediction said, and another speed; the
plan near it is off the same way. Memory is corrected by the run's residual in bytes (what the
estimate missed is mostly fixed: a buffer, the runtime), speed by the run's measured ÷ predicted
ratio applied to the plan's own uncalibrated prediction. The nearest run is one of the same GPU
split and KV type if there is one, then the closest context, then the newest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from app.core.advice.profiles import Profile, run_settings
from app.core.advice.recommend import Budget, Plan, plan_settings
from app.core.advice.speed import GEN_TERMS, PROMPT_TERMS
from app.core.units import format_bytes

MIN_SPEED_TOKENS = 16  # an answer of fewer tokens says little about the speed


def measured_runs(plans: Sequence[Plan], profiles: Iterable[Profile]) -> list[dict[str, Any] | None]:
    """For each plan, the newest matching run as ``advise --json`` shows it, or None."""
    newest = _newest(profiles)
    out: list[dict[str, Any] | None] = []
    for plan in plans:
        found = newest.get(plan_settings(plan))
        out.append(None if found is None else as_dict(found))
    return out


def _newest(profiles: Iterable[Profile]) -> dict[tuple[Any, ...], Profile]:
    newest: dict[tuple[Any, ...], Profile] = {}
    for p in profiles:
        key = run_settings(p)
        if key not in newest or p.measured.when > newest[key].measured.when:
            newest[key] = p
    return newest


def as_dict(p: Profile) -> dict[str, Any]:
    m = p.measured
    return {"outcome": m.outcome, "ram_bytes": m.peak_ram_bytes, "vram_bytes": m.peak_vram_bytes,
            "tok_s": m.gen_tok_s, "prompt_tok_s": m.prompt_tok_s, "load_s": m.load_s, "depth": m.depth,
            "when": m.when, "source": p.source, "llama_cpp": p.llama_cpp, "kind": p.kind}  # fmt: skip


def _nearest(plan: Plan, runs: Sequence[Profile]) -> Profile | None:
    same = [r for r in runs if r.key.quant.upper() == plan.quant.upper() and r.measured.outcome == "ok"
            and r.predicted is not None]  # fmt: skip
    if not same:
        return None

    def distance(r: Profile) -> tuple[int, float]:
        split = (r.key.n_gpu_layers, r.key.moe_cpu_layers, r.key.type_k.upper()) != (
            plan.n_gpu_layers, plan.moe_cpu_layers, plan.type_k.upper())  # fmt: skip
        return int(split), abs(math.log(r.key.n_ctx / plan.n_ctx))

    newest_first = sorted(same, key=lambda r: r.measured.when, reverse=True)
    return min(newest_first, key=distance)  # the first of equals: the newest


def corrections(plans: Sequence[Plan], profiles: Iterable[Profile]) -> list[dict[str, Any] | None]:
    """For each plan with no run of its own settings, the correction its nearest run implies (see
    the module doc), as ``advise --json`` shows it; None for a plan that ran or has no near run."""
    runs = list(profiles)
    ran = _newest(runs)
    out: list[dict[str, Any] | None] = []
    for plan in plans:
        near = None if plan_settings(plan) in ran else _nearest(plan, runs)
        out.append(None if near is None else _correct(plan, near))
    return out


def _correct(plan: Plan, run: Profile) -> dict[str, Any]:
    pred, m = run.predicted, run.measured
    assert pred is not None
    terms = dict(plan.speed.terms)
    own_gen = sum(terms.get(k, 0.0) for k in GEN_TERMS)
    own_prompt = sum(terms.get(k, 0.0) for k in PROMPT_TERMS)
    out: dict[str, Any] = {"from": {"n_ctx": run.key.n_ctx, "n_gpu_layers": run.key.n_gpu_layers,
                                    "moe_cpu_layers": run.key.moe_cpu_layers, "type_k": run.key.type_k,
                                    "when": m.when, "kind": run.kind, "source": run.source}}  # fmt: skip
    if m.peak_ram_bytes is not None:
        out["ram_bytes"] = max(0, plan.ram_bytes + m.peak_ram_bytes - pred.ram_bytes)
    if m.peak_vram_bytes is not None and plan.vram_bytes:
        out["vram_bytes"] = max(0, plan.vram_bytes + m.peak_vram_bytes - pred.vram_bytes)
    if m.gen_tok_s and pred.tok_s and own_gen and (m.n_gen or MIN_SPEED_TOKENS) >= MIN_SPEED_TOKENS:
        out["tok_s"] = m.gen_tok_s / pred.tok_s / own_gen
    if m.prompt_tok_s and pred.prompt_tok_s and own_prompt and run.kind == "bench":
        out["prompt_tok_s"] = m.prompt_tok_s / pred.prompt_tok_s / own_prompt
    return out


def over_budget(plans: Sequence[Plan], fixes: Sequence[dict[str, Any] | None],
                budget: Budget) -> dict[tuple[str, int, str, int, int], str]:  # fmt: skip
    """Plans the advisor judged to fit that, corrected by a measured run, need more RAM or VRAM
    than the budget has → why, in words (``advise``'s ``failed_here``: not recommended)."""
    out: dict[tuple[str, int, str, int, int], str] = {}
    for plan, fix in zip(plans, fixes, strict=True):
        if fix is None or plan.fits == "no":
            continue
        gpu_free = sum(g.free_bytes for g in budget.gpus)
        ram, vram = fix.get("ram_bytes", plan.ram_bytes), fix.get("vram_bytes", plan.vram_bytes)
        src = fix["from"]
        run = f"a run here with a {src['n_ctx']:,}-token context used more memory than predicted"
        if ram > budget.ram_bytes:
            out[plan_settings(plan)] = (f"{run}; corrected by it, this plan needs {format_bytes(ram)} of RAM, "
                                        f"more than the {format_bytes(budget.ram_bytes)} available")  # fmt: skip
        elif plan.vram_bytes and vram > gpu_free:
            out[plan_settings(plan)] = (f"{run}; corrected by it, this plan needs {format_bytes(vram)} of VRAM, "
                                        f"more than the {format_bytes(gpu_free)} free")  # fmt: skip
    return out

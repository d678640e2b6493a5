"""A plan beside what happened when it ran here (issue 19): the newest recorded profile of the same
file with the plan's settings — quantization, context, KV type, GPU layers, experts in RAM.

Threads and flash attention are not part of the match: the engine picks them itself for a plan, so
a plan's runs are the runs of its settings whatever they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from app.core.advice.profiles import Profile, run_settings
from app.core.advice.recommend import Plan, plan_settings


def measured_runs(plans: Sequence[Plan], profiles: Iterable[Profile]) -> list[dict[str, Any] | None]:
    """For each plan, the newest matching run as ``advise --json`` shows it, or None."""
    newest: dict[tuple[Any, ...], Profile] = {}
    for p in profiles:
        key = run_settings(p)
        if key not in newest or p.measured.when > newest[key].measured.when:
            newest[key] = p
    out: list[dict[str, Any] | None] = []
    for plan in plans:
        found = newest.get(plan_settings(plan))
        out.append(None if found is None else as_dict(found))
    return out


def as_dict(p: Profile) -> dict[str, Any]:
    m = p.measured
    return {"outcome": m.outcome, "ram_bytes": m.peak_ram_bytes, "vram_bytes": m.peak_vram_bytes,
            "tok_s": m.gen_tok_s, "prompt_tok_s": m.prompt_tok_s, "load_s": m.load_s, "depth": m.depth,
            "when": m.when, "source": p.source, "llama_cpp": p.llama_cpp}  # fmt: skip

"""What the Advisor panel asks the core, as plain functions with no Qt: they run on the thread pool
and are tested without an event loop.

``compute(query)`` is one refresh of the panel: the core's advice for a model at one context on one
budget, and — when the user fixed the number of GPU layers — every plan re-estimated with that
placement instead of the advisor's own binary search.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from app.core.errors import Cancelled

if TYPE_CHECKING:
    from app.core.advice.recommend import Advice, Budget, Plan
    from app.core.model.catalog import CatalogEntry
    from app.core.model.info import ModelInfo

MIN_CTX = 512  # the smallest context the slider offers; below it a chat hardly fits one answer
# A model that does not say how long it was trained: the longest context the catalog knows.
FALLBACK_TRAIN_CTX = 131072
GB = 1000**3  # "what if" sizes are typed like spec sheets: decimal gigabytes, as parse_size reads "16GB"


@dataclass(frozen=True)
class AdvisorQuery:
    """One refresh: the model, what the machine may give it, and the user's two dials."""

    model: ModelInfo
    budget: Budget
    n_ctx: int
    n_gpu_layers: int | None = None  # None: the advisor picks the most that fit
    measured: dict[str, dict[str, Any]] | None = None  # this model's own quality measurements


@dataclass(frozen=True)
class AdvisorResult:
    query: AdvisorQuery
    advice: Advice
    plans: tuple[Plan, ...]  # one per quant at query.n_ctx, smallest file first
    recommended: Plan | None
    notes: tuple[str, ...] = ()  # lines the panel shows before the advisor's reasons

    def plan_for(self, quant: str) -> Plan | None:
        return next((p for p in self.plans if p.quant == quant), None)


def context_steps(model: ModelInfo) -> list[int]:
    """Powers of two from 512 to the model's training context (and that context if it is not one)."""
    train = model.n_ctx_train or FALLBACK_TRAIN_CTX
    steps = []
    c = MIN_CTX
    while c <= train:
        steps.append(c)
        c *= 2
    if not steps or steps[-1] != train:
        steps.append(train)
    return steps


def default_ctx(model: ModelInfo) -> int:
    """The context the advisor plans with unless told otherwise (as ``tailorlm advise`` does)."""
    from app.core.advice.recommend import DEFAULT_CTX

    return min(DEFAULT_CTX, model.n_ctx_train or DEFAULT_CTX)


def budget_for(
    profile: object, *, ram_gb: float = 0.0, vram_gb: float = 0.0, workers: tuple[Any, ...] = ()
) -> Budget:
    """The budget of ``profile`` as if it had ``ram_gb``/``vram_gb`` (0: as detected), with the
    usable ``workers`` (the Machine panel's) lending their memory."""
    from app.core.advice.recommend import budget_from_profile
    from app.core.machine.hardware import apply_overrides

    changes = {}
    if ram_gb > 0:
        changes["ram_bytes"] = int(ram_gb * GB)
    if vram_gb > 0:
        changes["vram_bytes"] = int(vram_gb * GB)
    from app.core.advice.speed_calibration import calibrated, calibration_for

    if changes:
        profile = apply_overrides(profile, **changes)  # type: ignore[arg-type]
    # speeds as this machine's benchmark runs measured them (the Benchmark button), once there are any
    budget = calibrated(budget_from_profile(profile), calibration_for(profile))  # type: ignore[arg-type]
    if any(w.usable for w in workers):
        from app.core.advice.pooling import with_workers

        budget = with_workers(budget, workers)
    return budget


def compute(query: AdvisorQuery, cancel: threading.Event | None = None) -> AdvisorResult:
    """The advice at ``query.n_ctx`` (larger catalog contexts too, so the reasons can say how far the
    pick stretches), with the GPU-layer override applied to that context's plans."""
    from app.core.advice.recommend import CONTEXTS, advise, pick_plan

    model, n_ctx = query.model, query.n_ctx
    larger = tuple(c for c in CONTEXTS if c > n_ctx)
    advice = advise(model, query.budget, n_ctx=n_ctx, contexts=(n_ctx, *larger), measured=query.measured)
    _check(cancel)
    # Least precise first, as the precision slider runs; equal sizes (a K-quant that falls back on
    # a small model) keep the worse quality first.
    plans = sorted(
        (p for p in advice.plans if p.n_ctx == n_ctx), key=lambda p: (p.file_bytes, -p.quality.kld)
    )
    recommended = advice.recommended
    notes: tuple[str, ...] = ()
    ngl = query.n_gpu_layers
    if ngl is not None:
        fixed = []
        for p in plans:
            fixed.append(plan_with_layers(model, p, query.budget, ngl))
            _check(cancel)
        plans = fixed
        recommended = pick_plan(plans)
        on_gpu = plans[0].n_gpu_layers if plans else 0
        notes = (
            f"You fixed the GPU layers at {on_gpu} of {model.n_layer + 1}; the table and the highlighted "
            "row use that split, the reasons below the advisor's own.",
        )
    return AdvisorResult(query, advice, tuple(plans), recommended, notes)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Stopped.")


def plan_with_layers(model: ModelInfo, plan: Plan, budget: Budget, n_gpu_layers: int) -> Plan:
    """``plan`` re-estimated with exactly ``n_gpu_layers`` on the GPU (0 without one).

    Uses the advisor's own run settings and fit test so a fixed split and the automatic one
    differ only in the layer count.
    """
    from app.core.advice.recommend import best_plan

    fixed = best_plan(model, plan.quant, plan.n_ctx, budget, type_k=plan.type_k, n_gpu_layers=n_gpu_layers)
    return replace(
        plan, n_gpu_layers=fixed.n_gpu_layers, fits=fixed.fits, estimate=fixed.estimate, speed=fixed.speed
    )


# --- first run: what this machine can run from the catalog -----------------------------------


@dataclass(frozen=True)
class CatalogFit:
    """One catalog model and the advisor's pick for it (None: it does not fit)."""

    entry: CatalogEntry
    plan: Plan | None


def catalog_fits(
    budget: Budget, n_ctx: int, *, cancel: threading.Event | None = None, min_tok_s: float | None = None
) -> list[CatalogFit]:
    """Every catalog model's recommended plan, ranked like ``tailorlm catalog``: usable speed
    first, then slow, then not fitting; within each the largest model, then the best quality."""
    from app.core.advice.policy import DEFAULT_MIN_TOK_S, comfortable
    from app.core.advice.recommend import advise
    from app.core.model.catalog import load_catalog
    from app.core.model.source import model_from_catalog

    floor = DEFAULT_MIN_TOK_S if min_tok_s is None else min_tok_s
    rows = []
    for entry in load_catalog():
        _check(cancel)
        model = model_from_catalog(entry)
        advice = advise(model, budget, n_ctx=n_ctx, contexts=(n_ctx,), min_tok_s=floor)
        rows.append(CatalogFit(entry, advice.recommended))

    def rank(row: CatalogFit) -> tuple[int, float, float]:
        p = row.plan
        group = 2 if p is None else (0 if comfortable(p.speed.tok_s, floor) else 1)
        return (group, -row.entry.params_b, p.quality.kld if p else 0.0)

    return sorted(rows, key=rank)

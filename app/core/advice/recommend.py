"""Rank plans (quantization × context × GPU layers) for a model on a machine, and pick one; the words
that explain the pick are :mod:`app.core.advice.reasons`'s.

The rule: the best quality that fits with headroom for the OS and other apps, at a usable
speed. Memory comes from :mod:`app.core.advice.estimate`, speed from :mod:`app.core.advice.speed`, quality from
:mod:`app.core.advice.quality`. Hardware comes in as a :class:`Budget` so "what if I had 16 GB of RAM
and an 8 GB GPU?" is just another budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from app.core.advice.budget import DEFAULT_RAM_RESERVE_BYTES as DEFAULT_RAM_RESERVE_BYTES
from app.core.advice.budget import DEFAULT_VRAM_RESERVE_BYTES as DEFAULT_VRAM_RESERVE_BYTES
from app.core.advice.budget import Budget as Budget
from app.core.advice.budget import GpuBudget as GpuBudget
from app.core.advice.budget import budget_from_profile as budget_from_profile
from app.core.advice.estimate import MemoryEstimate, estimate, tensors_for
from app.core.advice.policy import DEFAULT_MIN_TOK_S, GOOD_KLD, SAME_QUALITY_KLD, comfortable
from app.core.advice.profiles import settings_key
from app.core.advice.quality import Quality, quality_for, quality_of
from app.core.advice.reasons import explain, on_workers
from app.core.advice.run_settings import RunSettings
from app.core.advice.speed import SpeedEstimate, predict_speed
from app.core.model import quant_recipe
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo

CONTEXTS = (2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144)  # up to Qwen3.5-class training contexts
DEFAULT_CTX = 4096


@dataclass(frozen=True)
class PlacementOption:
    """Another way the same file and context could be placed, weighed and not chosen."""

    n_gpu_layers: int
    moe_cpu_layers: int
    vram_bytes: int
    ram_bytes: int
    tok_s: float
    fits: bool


@dataclass(frozen=True)
class Plan:
    quant: str
    n_ctx: int
    n_gpu_layers: int
    type_k: str
    fits: str  # "gpu" | "partial" | "cpu" | "no"
    estimate: MemoryEstimate
    speed: SpeedEstimate
    quality: Quality
    file_bytes: int
    dominated_by: str | None = None  # a smaller file of better quality exists
    moe_cpu_layers: int = 0  # MoE: the first layers whose routed experts stay in RAM
    alternatives: tuple[PlacementOption, ...] = ()  # placements weighed for this file and context

    @property
    def ram_bytes(self) -> int:
        return self.estimate.ram_bytes

    @property
    def vram_bytes(self) -> int:
        return self.estimate.vram_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "quant": self.quant,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": self.n_gpu_layers,
            "moe_cpu_layers": self.moe_cpu_layers,
            "type_k": self.type_k,
            "fits": self.fits != "no",
            "placement": self.fits if self.fits != "no" else None,  # "gpu" | "partial" | "cpu"
            "ram_bytes": self.ram_bytes,
            "vram_bytes": self.vram_bytes,
            "file_bytes": self.file_bytes,
            "breakdown": [d.to_dict() for d in self.estimate.devices],
            "kv_cells": self.estimate.kv_cells,
            "tok_s": round(self.speed.tok_s, 2),
            "prompt_tok_s": round(self.speed.prompt_tok_s, 1),
            "speed_bound": self.speed.bound,
            "quality": self.quality.to_dict(),
            "dominated_by": self.dominated_by,
            "alternatives": [asdict(o) for o in self.alternatives],
            # workers: the endpoint of each "GPU<i>" that is one, and the network per generated token
            "rpc_devices": list(self.estimate.settings.rpc_devices),
            "tensor_split": list(self.estimate.settings.gpu_split),
            "link_bytes_per_token": self.speed.link_bytes_per_token,
        }


@dataclass(frozen=True)
class Advice:
    model: ModelInfo
    budget: Budget
    target_ctx: int
    plans: tuple[Plan, ...]
    recommended: Plan | None
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _fits(est: MemoryEstimate, budget: Budget) -> bool:
    ram_needed = est.ram_bytes
    for i, g in enumerate(budget.gpus):
        dev = est.device(f"GPU{i}")
        if dev.total_bytes > g.free_bytes:
            return False
        if g.unified:
            ram_needed += dev.total_bytes  # the same memory pool
    return ram_needed <= budget.ram_bytes


def _settings(
    budget: Budget, n_ctx: int, ngl: int, type_k: str, moe_cpu: int = 0, out_here: bool = False
) -> RunSettings:
    # llama.cpp's default split: in proportion to each device's free memory, workers first
    split = tuple(float(g.free_bytes) for g in budget.gpus) if len(budget.gpus) > 1 else ()
    rpc = tuple(g.endpoint for g in budget.gpus if g.backend == "rpc")
    local = [g for g in budget.gpus if g.backend != "rpc"]
    backend = local[0].backend if local else "cuda"
    fa = True
    return RunSettings(
        n_ctx=n_ctx, n_gpu_layers=ngl, type_k=type_k, type_v=type_k, flash_attn=fa,
        gpu_backend=backend, gpu_split=split if split or not rpc else (1.0,), cpu_isa=budget.cpu_isa,
        has_gpu=bool(local) and budget.can_offload, moe_cpu_layers=moe_cpu, rpc_devices=rpc,
        output_here=out_here and ngl > 0,
    )  # fmt: skip


def _gpus_fit(e: MemoryEstimate, budget: Budget) -> bool:
    return all(e.device(f"GPU{i}").total_bytes <= g.free_bytes for i, g in enumerate(budget.gpus))


def _search(lo: int, hi: int, ok: Callable[[int], bool], *, largest: bool) -> int | None:
    """The largest (or smallest) n in [lo, hi] with ``ok(n)``, for an ``ok`` that holds up to (or
    from) some point; None if it holds nowhere. VRAM grows with each offloaded layer and shrinks
    with each layer whose experts stay in RAM, so a binary search finds the limit."""
    if not ok(lo if largest else hi):
        return None
    while lo < hi:
        if largest:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        else:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


def best_plan(
    model: ModelInfo,
    quant: str,
    n_ctx: int,
    budget: Budget,
    *,
    type_k: str = "F16",
    tensors: tuple[TensorInfo, ...] | None = None,
    n_gpu_layers: int | None = None,
    moe_cpu_layers: int | None = None,
) -> Plan:
    """The fastest placement that fits for (quant, ctx); falls back to CPU, or reports "no".

    Dense models: the most GPU layers that fit. Mixture-of-experts models also try every layer on
    the GPU with the experts of the first N layers in RAM (the smallest N that fits; llama.cpp's
    ``--n-cpu-moe N``), and all experts in RAM with as many layers on the GPU as fit; the fastest
    predicted of those that fit wins. ``n_gpu_layers`` / ``moe_cpu_layers`` fix a choice instead
    (a user's override), judged by the same rules; the other is then searched.
    """
    tensors = tensors if tensors is not None else tensors_for(model, quant)
    max_ngl = model.n_layer + 1 if budget.can_offload and budget.gpus else 0
    cache: dict[tuple[int, int, bool], MemoryEstimate] = {}

    def est_at(ngl: int, moe: int = 0, out_here: bool = False) -> MemoryEstimate:
        key = (max(0, min(ngl, max_ngl)), max(0, min(moe, model.n_layer)) if model.is_moe else 0, out_here)
        if key not in cache:
            settings = _settings(budget, n_ctx, key[0], type_k, key[1], out_here)
            cache[key] = estimate(model, quant, settings, tensors=tensors)
        return cache[key]

    def most_layers(moe: int) -> MemoryEstimate:
        ngl = _search(0, max_ngl, lambda n: _gpus_fit(est_at(n, moe), budget), largest=True)
        return est_at(ngl or 0, moe)

    moe_fixed = moe_cpu_layers if model.is_moe else 0

    def fewest_experts_in_ram(ngl: int) -> MemoryEstimate:
        n = _search(0, model.n_layer, lambda m: _gpus_fit(est_at(ngl, m), budget), largest=False)
        return est_at(ngl, model.n_layer if n is None else n)

    if n_gpu_layers is not None:
        fixed_ngl = max(0, min(n_gpu_layers, max_ngl))
        auto_moe = moe_fixed is None and fixed_ngl > 0
        candidates = [fewest_experts_in_ram(fixed_ngl) if auto_moe else est_at(fixed_ngl, moe_fixed or 0)]
    elif budget.workers_only:
        # workers only: the fewest layers on them that make it fit here (their memory is lent), with
        # the output matmul here (a token's hidden state crosses the network, not its logits) or not
        moe = moe_fixed or 0

        def fewest_lent(here: bool) -> MemoryEstimate:
            k = _search(
                0, max_ngl, lambda n: est_at(n, moe, here).ram_bytes <= budget.ram_bytes, largest=False
            )
            fewest = est_at(k, moe, here) if k is not None else None
            return fewest if fewest is not None and _gpus_fit(fewest, budget) else most_layers(moe)

        candidates = [fewest_lent(True), fewest_lent(False)]
    elif moe_fixed is not None or not (model.is_moe and max_ngl):
        candidates = [most_layers(moe_fixed or 0)]
    else:
        all_on_gpu = fewest_experts_in_ram(max_ngl)
        candidates = [
            most_layers(0),
            all_on_gpu if _gpus_fit(all_on_gpu, budget) else most_layers(model.n_layer),
        ]

    def speed_of(e: MemoryEstimate) -> SpeedEstimate:
        return predict_speed(
            model, tensors, e,
            cpu_bandwidth_bytes_s=budget.ram_bandwidth_bytes_s,
            gpu_bandwidth_bytes_s={f"GPU{i}": g.bandwidth_bytes_s for i, g in enumerate(budget.gpus)},
            cpu_threads=budget.cpu_threads, gpu_names={f"GPU{i}": g.name for i, g in enumerate(budget.gpus)},
            host_link_bytes_s=budget.gpus[0].host_link_bytes_s if budget.gpus else None,
            calibration=dict(budget.speed_calibration),
            rpc_links={f"GPU{i}": (g.rtt_s, g.link_bytes_s) for i, g in enumerate(budget.gpus) if g.backend == "rpc"},
        )  # fmt: skip

    scored = [(e, speed_of(e)) for e in dict.fromkeys(candidates)]
    fitting = [(e, sp) for e, sp in scored if _fits(e, budget)]
    chosen, speed = max(fitting or scored[:1], key=lambda c: c[1].tok_s)
    ngl, moe = chosen.settings.n_gpu_layers, chosen.settings.moe_cpu_layers
    if not _fits(chosen, budget):
        fits = "no"
    elif ngl == 0:
        fits = "cpu"
    elif ngl >= model.n_layer + 1 and moe == 0:
        fits = "gpu"
    else:
        fits = "partial"
    others = tuple(
        PlacementOption(e.settings.n_gpu_layers, e.settings.moe_cpu_layers, e.vram_bytes, e.ram_bytes, sp.tok_s, _fits(e, budget))
        for e, sp in scored
        if e is not chosen
    )  # fmt: skip
    return Plan(
        quant, n_ctx, ngl, type_k, fits, chosen, speed, quality_of(quant), chosen.file_bytes,
        moe_cpu_layers=moe, alternatives=others,
    )  # fmt: skip


def _quants(model: ModelInfo) -> list[str]:
    """The ladder, the file's own type, and MXFP4_MOE for a model released with MXFP4 experts
    (gpt-oss): its experts as released, the rest Q8_0 — the file its publishers ship."""
    qs = list(quant_recipe.LADDER)
    known = {**quant_recipe.FTYPE_DEFAULT, **quant_recipe.OTHER_FTYPES}
    if model.file_type and model.file_type not in qs and model.file_type in known:
        qs.append(model.file_type)
    if "MXFP4_MOE" not in qs and any(t.type_name == "MXFP4" for t in model.tensors):
        qs.append("MXFP4_MOE")
    return qs


def advise(
    model: ModelInfo,
    budget: Budget,
    *,
    n_ctx: int | None = None,
    contexts: tuple[int, ...] | None = None,
    quants: list[str] | None = None,
    min_tok_s: float = DEFAULT_MIN_TOK_S,
    measured: dict[str, dict[str, Any]] | None = None,
    failed_here: Mapping[tuple[str, int, str, int, int], str] | None = None,
) -> Advice:
    """All plans for the model on this budget, the recommended one, and why. ``measured``: this
    model's own quality measurements (:func:`app.core.advice.measured_quality.measured`), which
    replace the published Llama-3-8B numbers for the types they cover. ``failed_here``: plan
    settings (:func:`plan_settings`) whose last run on this machine failed, and why
    (:func:`app.core.advice.profiles.failed_runs`): never recommended, and the reasons say so."""
    train = model.n_ctx_train or 131072
    target = n_ctx or min(DEFAULT_CTX, train)
    ctxs = sorted({c for c in (contexts or CONTEXTS) if c <= train} | {target})
    if n_ctx and contexts is None:
        ctxs = [n_ctx]
    qlist = quants or _quants(model)
    tables = {q: tensors_for(model, q) for q in qlist}
    sizes = {q: quant_recipe.file_bytes(t) for q, t in tables.items()}
    plans: list[Plan] = []
    quality = {q: quality_for(q, measured) for q in qlist}
    for q in qlist:
        dom = next(
            (o for o in qlist if o != q and sizes[o] <= sizes[q] and quality[o].kld < quality[q].kld), None
        )
        for c in ctxs:
            plans.append(replace(best_plan(model, q, c, budget, tensors=tables[q]), dominated_by=dom,
                                 quality=quality[q]))  # fmt: skip
    at_target = [p for p in plans if p.n_ctx == target]
    failed = failed_here or {}
    rec = pick_plan([p for p in at_target if plan_settings(p) not in failed], min_tok_s)
    reasons, warnings = explain(model, budget, target, at_target, plans, rec, min_tok_s)
    reasons = on_workers(reasons, budget)
    avoided = [f"{p.quant} with a {p.n_ctx:,}-token context and {p.n_gpu_layers} GPU layers is not recommended: "
               f"{failed[plan_settings(p)]}." for p in at_target if plan_settings(p) in failed]  # fmt: skip
    return Advice(model, budget, target, tuple(plans), rec, tuple(avoided + reasons), tuple(warnings))


def plan_settings(plan: Plan) -> tuple[str, int, str, int, int]:
    """The settings that name a plan's runs (:func:`app.core.advice.profiles.settings_key`)."""
    return settings_key(plan.quant, plan.n_ctx, plan.type_k, plan.n_gpu_layers, plan.moe_cpu_layers)


def pick_plan(plans: list[Plan], min_tok_s: float = DEFAULT_MIN_TOK_S) -> Plan | None:
    """The recommended plan among ``plans`` (one context): best quality that fits, then speed."""
    fitting = [p for p in plans if p.fits != "no" and p.dominated_by is None]
    if not fitting:
        return None
    # Speed never buys quality below "good" (Q4_K_M-like): a fast wrong answer helps nobody.
    good = [p for p in fitting if p.quality.kld <= GOOD_KLD]
    pool = good or fitting
    usable = [p for p in pool if comfortable(p.speed.tok_s, min_tok_s)]
    if not usable:
        # Slow whatever we pick: the fastest plan of good quality (equal speeds: the better, then the
        # smaller); with nothing good fitting, the best quality that fits. The reasons say which
        # rule chose it and the warning that it is slow (app.core.advice.reasons).
        if good:
            return min(good, key=lambda p: (-p.speed.tok_s, p.quality.kld, p.file_bytes))
        return min(fitting, key=lambda p: p.quality.kld)
    best_kld = min(p.quality.kld for p in usable)
    # Among plans of practically equal quality take the smallest file (faster, more headroom).
    near = [p for p in usable if p.quality.kld - best_kld < SAME_QUALITY_KLD]
    return min(near, key=lambda p: (p.file_bytes, -p.speed.tok_s))

"""What to load for a chat with one GGUF file: the one planner both front ends call.

``plan_chat(model, budget, overrides)`` takes the advisor's best GPU split (or the user's), the
context (the user's, or :data:`DEFAULT_CTX` capped by the model's training context) and the KV
cache type, predicts the memory exactly as the engine will be asked to run (same backend, CPU
instruction sets and placement rules as ``advise``), and judges the fit. A plan that does not fit
carries the reason and the nearest plan of the same file that does; front ends refuse it unless
the user insists (``--force`` / "Load anyway"), and then say what will probably happen.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.advice.estimate import read_once_ranges
from app.core.advice.reasons import a_number
from app.core.advice.recommend import DEFAULT_CTX, Budget, Plan, best_plan
from app.core.advice.run_settings import KV_TYPES, RunSettings
from app.core.errors import DoesNotFitError, TailorError
from app.core.model.info import ModelInfo
from app.core.units import format_bytes

# llama.cpp allocates the KV cache in cells of 256 (llama-context.cpp pads n_ctx to 256); a
# smaller context than one cell saves nothing.
CTX_STEP = 256


@dataclass(frozen=True)
class ChatOverrides:
    """What the user chose; ``None`` leaves the choice to the advisor."""

    n_ctx: int | None = None  # None: DEFAULT_CTX, at most the model's training context
    n_gpu_layers: int | None = None  # None: the most layers that fit the GPU
    # MoE: the first layers whose experts stay in RAM (a model's n_layer or more: all); None: the
    # fastest placement that fits (app.core.advice.recommend.best_plan)
    moe_cpu_layers: int | None = None
    type_kv: str = "F16"  # the KV cache type, K and V alike
    force: bool = False  # load even when the plan does not fit


@dataclass(frozen=True)
class ChatPlan:
    """The settings to load, the prediction for exactly those settings, and the verdict."""

    model_path: str
    quant: str
    plan: Plan  # the prediction: memory per device, speed, quality, fit
    settings: RunSettings  # what the engine is asked for (``app.engine.protocol.Load.from_plan``)
    nearest: Plan | None  # when it does not fit: the closest plan of this file that does
    forced: bool = False  # loaded although it does not fit: the user insisted
    budget_ram: int = 0  # the RAM the plan may use (to say what will probably run out)
    # File ranges llama.cpp reads at load and never again (estimate.read_once_ranges): the model
    # process hands their pages back once loaded, so what stays is what the plan says must fit.
    read_once: tuple[tuple[int, int], ...] = ()

    @property
    def fits(self) -> bool:
        return self.plan.fits != "no"

    @property
    def predicted(self) -> dict[str, int]:
        return {"ram_bytes": self.plan.ram_bytes, "vram_bytes": self.plan.vram_bytes}

    def refusal(self) -> str | None:
        """Why this plan does not fit, in words; None when it fits."""
        if self.fits:
            return None
        p = self.plan
        gpu = f" and {format_bytes(p.vram_bytes)} of VRAM" if p.vram_bytes else ""
        return (
            f"{_name(self.model_path)} as {self.quant} with {a_number(p.n_ctx)}-token context and "
            f"{p.n_gpu_layers} GPU layers needs {format_bytes(p.ram_bytes)} of RAM{gpu}; "
            "this machine cannot give it that."
        )

    def suggestion(self) -> str:
        """The nearest plan that fits, as something the user can do."""
        n = self.nearest
        if n is None:
            return "No context length fits this file here: try a smaller quantization (`tailorlm advise` lists them)."
        kv = f", KV cache {n.type_k}" if n.type_k != self.plan.type_k else ""
        where = f"{n.n_gpu_layers} GPU layers" if n.n_gpu_layers else "on the CPU"
        return (f"It fits with {a_number(n.n_ctx)}-token context{kv}, {where} "
                f"({format_bytes(n.ram_bytes)} RAM{f', {format_bytes(n.vram_bytes)} VRAM' if n.vram_bytes else ''}).")  # fmt: skip

    def risk(self) -> str | None:
        """What will probably happen when a plan that does not fit is loaded anyway."""
        if self.fits:
            return None
        over_ram = self.plan.ram_bytes > self.budget_ram
        if over_ram:
            return ("Loading anyway: the system will probably swap and slow to a crawl, or kill the model "
                    "process when memory runs out (the window and the conversation stay).")  # fmt: skip
        return ("Loading anyway: llama.cpp will probably run out of GPU memory while loading and stop; "
                "fewer GPU layers would avoid it.")  # fmt: skip

    def to_record(self) -> dict[str, object]:
        """What a conversation stores about the plan that wrote it."""
        return {
            "quant": self.quant,
            "predicted": self.predicted,
            "placement": self.plan.fits,
            "n_gpu_layers": self.plan.n_gpu_layers,
            "moe_cpu_layers": self.plan.moe_cpu_layers,
            "forced": self.forced,
        }

    def check(self) -> ChatPlan:
        """This plan, or ``DoesNotFitError`` with the reason and the nearest fit (unless forced)."""
        if self.fits or self.forced:
            return self
        raise DoesNotFitError(self.refusal() or "", hint=self.suggestion() + " Or load it anyway.")


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def default_ctx(model: ModelInfo) -> int:
    return min(DEFAULT_CTX, model.n_ctx_train or DEFAULT_CTX)


def plan_chat(model: ModelInfo, budget: Budget, overrides: ChatOverrides = ChatOverrides()) -> ChatPlan:
    """The plan for chatting with ``model`` (a local GGUF file) on ``budget``; see the module doc."""
    if model.source_kind != "gguf":
        raise TailorError(f"{model.name} is not a local .gguf file.",
                          hint="Download a GGUF (`tailorlm pull`) or convert the checkpoint first.")  # fmt: skip
    if overrides.type_kv not in KV_TYPES:
        raise TailorError(
            f"{overrides.type_kv} is not a KV cache type.", hint="Choose one of " + ", ".join(KV_TYPES) + "."
        )
    if overrides.n_ctx is not None and overrides.n_ctx < 1:
        raise TailorError("The context length must be at least 1 token.")
    n_ctx = overrides.n_ctx or default_ctx(model)
    quant = model.file_type or "?"
    if overrides.moe_cpu_layers is not None and overrides.moe_cpu_layers < 0:
        raise TailorError("The number of layers whose experts stay in RAM cannot be negative.")
    plan = best_plan(
        model, quant, n_ctx, budget, type_k=overrides.type_kv, n_gpu_layers=overrides.n_gpu_layers,
        moe_cpu_layers=overrides.moe_cpu_layers,
    )  # fmt: skip
    nearest = None if plan.fits != "no" else _nearest_fit(model, quant, plan, budget)
    return ChatPlan(model_path=model.source, quant=quant, plan=plan, settings=plan.estimate.settings,
                    nearest=nearest, forced=overrides.force and plan.fits == "no", budget_ram=budget.ram_bytes,
                    read_once=read_once_ranges(model, plan.estimate.settings))  # fmt: skip


def _nearest_fit(model: ModelInfo, quant: str, wanted: Plan, budget: Budget) -> Plan | None:
    """The plan of this file closest to ``wanted`` that fits: the advisor's GPU split at the same
    context first, then the longest context that fits with the same KV type, then with Q8_0."""
    same = best_plan(model, quant, wanted.n_ctx, budget, type_k=wanted.type_k)
    if same.fits != "no":
        return same
    for type_k in dict.fromkeys((wanted.type_k, "Q8_0")):
        lo, hi = 0, wanted.n_ctx // CTX_STEP  # in cells; binary search the largest count that fits
        best: Plan | None = None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            p = best_plan(model, quant, mid * CTX_STEP, budget, type_k=type_k)
            if p.fits != "no":
                lo, best = mid, p
            else:
                hi = mid - 1
        if best is not None:
            return best
    return None

"""Why the advisor picked what it picked, in plain words — one rule for the words and the numbers.

- Every speed in a sentence goes through :func:`app.core.advice.speed.format_tok_s`, the helper the
  front ends' tables use, so "about 1.3 tokens/s" in the text is "1.3" in the table.
- A quantization is only turned down for being slow when the recommended one is comfortable
  (:data:`app.core.advice.policy.DEFAULT_MIN_TOK_S`); when nothing on the machine is, the words say
  so and name the recommendation as the fastest that keeps quality, which is how it was picked.
- A context longer than the model was trained on is planned only with a warning about quality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.advice.naming import display_name
from app.core.advice.policy import GOOD_KLD, SAME_QUALITY_KLD, comfortable
from app.core.advice.speed_words import format_tok_s
from app.core.units import format_bytes

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget, Plan
    from app.core.model.info import ModelInfo

# Where a plan runs, inside a sentence: "… as Q4_K_M (partly on the GPU)".
PLACEMENT_PHRASE = {"gpu": "all on the GPU", "partial": "partly on the GPU", "cpu": "on the CPU only",
                    "no": "does not fit"}  # fmt: skip


def a_number(n: int) -> str:
    """ "a 4,096" but "an 8,192" / "an 11,000": the article as the number is spoken."""
    lead = f"{n:,}".split(",")[0]
    return f"{'an' if lead.startswith('8') or lead in ('11', '18') else 'a'} {n:,}"


def tok_s_words(tok_s: float) -> str:
    """ "1.3 tokens/s" — a speed in a sentence, rounded as the tables round it."""
    return f"{format_tok_s(tok_s)} tokens/s"


def experts_in_ram(p: Plan) -> str | None:
    """Which experts a MoE plan keeps in RAM, in words ("all", "those of 20 of 48 layers"); None
    when none do."""
    n_layer = len(p.estimate.layer_weight_bytes)
    if p.moe_cpu_layers <= 0:
        return None
    return "all" if p.moe_cpu_layers >= n_layer else f"those of {p.moe_cpu_layers} of {n_layer} layers"


def gpu_layers_text(p: Plan) -> str:
    """The GPU-layers cell of a plan table: "16", or "49, experts of 35 in RAM" / "49, experts in
    RAM" for a MoE plan that keeps experts in RAM."""
    experts = experts_in_ram(p)
    if experts is None:
        return str(p.n_gpu_layers)
    return (
        f"{p.n_gpu_layers}, experts in RAM"
        if experts == "all"
        else f"{p.n_gpu_layers}, experts of {p.moe_cpu_layers} in RAM"
    )


def placement_words(n_gpu_layers: int, moe_cpu_layers: int, n_layer: int) -> str:
    """A placement as a short phrase: "16 of 49 layers on the GPU", "experts in RAM, the rest on
    the GPU", "the experts of 20 layers in RAM, the rest on the GPU"."""
    total = n_layer + 1
    layers = "every layer" if n_gpu_layers >= total else f"{n_gpu_layers} of {total} layers"
    if moe_cpu_layers <= 0:
        return f"{layers} on the GPU"
    experts = (
        "the experts in RAM"
        if moe_cpu_layers >= n_layer
        else f"the experts of {moe_cpu_layers} layers in RAM"
    )
    rest = "the rest on the GPU" if n_gpu_layers >= total else f"{layers} on the GPU"
    return f"{experts}, {rest}"


def where(p: Plan, budget: Budget) -> str:
    """Where ``p`` runs and what it takes there, as the end of "it …"."""
    experts = experts_in_ram(p)
    if experts is not None and p.fits != "no":
        n_layer = len(p.estimate.layer_weight_bytes)
        kept = (
            "keeps all its experts in RAM"
            if experts == "all"
            else f"keeps the experts of its first {p.moe_cpu_layers} of {n_layer} layers in RAM"
        )
        rest = ("everything else on the GPU" if p.n_gpu_layers > n_layer
                else f"{p.n_gpu_layers} of {n_layer + 1} layers on the GPU")  # fmt: skip
        return f"{kept} and {rest} ({format_bytes(p.vram_bytes)} VRAM, {format_bytes(p.ram_bytes)} RAM)"
    if p.fits == "gpu":
        gpu = budget.gpus[0].name if budget.gpus else "GPU"
        return f"fits entirely on the {gpu} ({format_bytes(p.vram_bytes)} of VRAM, {format_bytes(p.ram_bytes)} of RAM)"
    if p.fits == "partial":
        return (f"runs with {p.n_gpu_layers} of {len(p.estimate.layer_weight_bytes) + 1} "
                f"layers on the GPU ({format_bytes(p.vram_bytes)} VRAM) and the rest in RAM ({format_bytes(p.ram_bytes)})")  # fmt: skip
    return f"runs on the CPU in {format_bytes(p.ram_bytes)} of RAM"


def plan_summary(p: Plan) -> str:
    """One plan in a sentence, with the numbers as the table shows them."""
    q = p.quality
    mem = f"needing {format_bytes(p.ram_bytes)} of RAM" + (
        f" and {format_bytes(p.vram_bytes)} of VRAM ({p.n_gpu_layers} layers)" if p.vram_bytes else ""
    )
    agree = (f"{100 * q.top_token_agreement:.1f} % of next-token choices match full precision, "
             if q.top_token_agreement not in (None, 1.0) else "")  # fmt: skip
    return (f"{p.quant} with {p.n_ctx:,} tokens: a {format_bytes(p.file_bytes)} file, {PLACEMENT_PHRASE[p.fits]}, "
            f"{mem}; about {tok_s_words(p.speed.tok_s)}. Quality {q.label}: {agree}KL divergence from "
            f"full precision {q.kld:.4f}.")  # fmt: skip


def context_warnings(model: ModelInfo, n_ctx: int) -> list[str]:
    """A warning when ``n_ctx`` is longer than the model was trained on (or that length is unknown)."""
    if model.n_ctx_train <= 0:
        return [f"{display_name(model)} does not say how long a context it was trained on; past that "
                "length answers lose coherence, so check its model card before relying on a long context."]  # fmt: skip
    if n_ctx > model.n_ctx_train:
        return [f"{a_number(n_ctx).capitalize()}-token context is longer than the {model.n_ctx_train:,} tokens "
                f"{display_name(model)} was trained on: past that, answers usually lose coherence (llama.cpp "
                f"warns the same). Plan {model.n_ctx_train:,} tokens or fewer unless its model card says it "
                "stretches further."]  # fmt: skip
    return []


def on_workers(reasons: list[str], budget: Budget) -> list[str]:
    """The reasons in words for a budget whose "GPUs" are all workers (``tailorlm worker``)."""
    if not budget.workers_only:
        return reasons
    pairs = (("on the GPU", "on the workers"), ("of VRAM", "of the workers' memory"),
             (" VRAM", " on the workers"), ("a GPU with", "workers with"))  # fmt: skip
    out = []
    for text in reasons:
        for gpu, worker in pairs:
            text = text.replace(gpu, worker)
        out.append(text)
    return out


def explain(
    model: ModelInfo,
    budget: Budget,
    target: int,
    at_target: list[Plan],
    plans: list[Plan],
    rec: Plan | None,
    min_tok_s: float,
) -> tuple[list[str], list[str]]:
    """(reasons, warnings) for the pick ``rec`` among ``at_target`` (the plans at ``target``)."""
    warnings = context_warnings(model, target)
    if rec is None:
        return _nothing_fits(model, budget, target, at_target, plans), warnings
    rec_ok = comfortable(rec.speed.tok_s, min_tok_s)
    better = [p for p in at_target
              if p.quality.kld < rec.quality.kld - SAME_QUALITY_KLD and p.dominated_by is None]  # fmt: skip
    reasons = [_verdict(rec, budget, better, rec_ok, min_tok_s), _quality(rec), _speed(rec)]
    reasons += _placements_weighed(rec, model.n_layer)
    if better:
        nxt = max(better, key=lambda p: p.quality.kld)  # the next level up the ladder
        if nxt.fits == "no":
            reasons.append(_needs_more(nxt, budget, plans, target))
        elif rec_ok and not comfortable(nxt.speed.tok_s, min_tok_s):
            reasons.append(f"{nxt.quant} would also fit but writes only ~{tok_s_words(nxt.speed.tok_s)}, "
                           f"below a comfortable {min_tok_s:g}.")  # fmt: skip
        elif nxt.speed.tok_s < rec.speed.tok_s:
            same = format_tok_s(nxt.speed.tok_s) == format_tok_s(
                rec.speed.tok_s
            )  # 0.96 and 0.98 both show "1.0"
            slower = "a little slower still" if same else "slower still"
            reasons.append(f"{nxt.quant} would also fit and keep more quality, but is {slower} "
                           f"(~{tok_s_words(nxt.speed.tok_s)}).")  # fmt: skip
    if model.n_params < 3e9 and rec.quality.kld > 0.01 and rec.quality.measured_against is None:
        warnings.append(
            "Small models lose more to quantization than the 8B model these numbers come from; "
            "prefer Q5_K_M or better when it fits."
        )
    if not rec_ok:
        warnings.append(
            f"Expect slow answers (~{tok_s_words(rec.speed.tok_s)}): a smaller model will feel better."
        )
    bigger = [p for p in plans if p.quant == rec.quant and p.n_ctx > target and p.fits != "no"]
    if bigger:
        top = max(bigger, key=lambda p: p.n_ctx)
        reasons.append(f"{rec.quant} still fits with up to {top.n_ctx:,} tokens of context "
                       f"({PLACEMENT_PHRASE[top.fits]}).")  # fmt: skip
    return reasons, warnings


def _verdict(rec: Plan, budget: Budget, better: list[Plan], rec_ok: bool, min_tok_s: float) -> str:
    tail = f"it {where(rec, budget)} with {a_number(rec.n_ctx)}-token context."
    if rec_ok:
        slower_better = any(p.fits != "no" for p in better)
        verdict = "the best balance of quality and speed" if slower_better else "the best quality that fits"
        return f"{rec.quant} is {verdict}: {tail}"
    # pick_plan's slow branch: the fastest plan of good quality or better, else the best that fits
    kept = (
        "the fastest that keeps good quality or better"
        if rec.quality.kld <= GOOD_KLD
        else "the best quality that fits"
    )
    return (f"Nothing reaches a comfortable {min_tok_s:g} tokens/s on this machine at this context; "
            f"{rec.quant} is {kept}: {tail}")  # fmt: skip


def _placements_weighed(rec: Plan, n_layer: int) -> list[str]:
    """For a MoE plan: the other placements of the same file that fit, and how much slower they are."""
    others = [o for o in rec.alternatives if o.fits]
    if not others:
        return []
    chosen = placement_words(rec.n_gpu_layers, rec.moe_cpu_layers, n_layer)
    alts = "; ".join(
        f"{placement_words(o.n_gpu_layers, o.moe_cpu_layers, n_layer)}: ~{tok_s_words(o.tok_s)}"
        for o in sorted(others, key=lambda o: -o.tok_s)
    )
    return [
        f"Placements weighed for {rec.quant}: {chosen}: ~{tok_s_words(rec.speed.tok_s)} (the fastest); {alts}."
    ]


def _quality(rec: Plan) -> str:
    q = rec.quality
    if q.kld == 0:
        return "Quality: full precision, nothing lost."
    loss = (f"about {100 * (1 - q.top_token_agreement):.0f} % of next-token choices differ from F16"
            if q.top_token_agreement not in (None, 1.0) else f"mean KL divergence {q.kld:.4f} from F16")  # fmt: skip
    if q.measured_against:
        loss = (f"{100 * (1 - q.top_token_agreement):.0f} % of next-token choices differ from its "
                f"{q.measured_against}" if q.top_token_agreement is not None else f"mean KL divergence {q.kld:.4f}")  # fmt: skip
        return (f"Quality: {q.label} — {loss}; perplexity {q.ppl_delta_pct:+.1f} % (measured here on this "
                f"model against its {q.measured_against}, mean KL divergence {q.kld:.4f}).")  # fmt: skip
    return (f"Quality: {q.label} — {loss}; perplexity +{q.ppl_delta_pct:.1f} % "
            f"({'interpolated from ' if q.interpolated else ''}llama.cpp's Llama-3-8B measurements).")  # fmt: skip


def _speed(rec: Plan) -> str:
    return (f"Speed: about {tok_s_words(rec.speed.tok_s)} when writing, {tok_s_words(rec.speed.prompt_tok_s)} "
            f"reading the prompt ({rec.speed.bound} bound; "
            f"{'calibrated by benchmark runs here' if rec.speed.calibrated else 'a rough estimate'}).")  # fmt: skip


def _needs_more(nxt: Plan, budget: Budget, plans: list[Plan], target: int) -> str:
    extra_ram = max(0, nxt.ram_bytes - budget.ram_bytes)
    alt = next((p for p in sorted(plans, key=lambda p: -p.n_ctx)
                if p.quant == nxt.quant and p.fits != "no" and p.n_ctx < target), None)  # fmt: skip
    msg = f"The next better level, {nxt.quant}, needs {format_bytes(extra_ram)} more RAM"
    if budget.gpus and budget.can_offload:
        msg += f" (with {nxt.estimate.settings.n_gpu_layers} layers on the GPU)"
    if alt is not None:
        msg += f", or {a_number(alt.n_ctx)}-token context"
    return msg + "."


def _nothing_fits(
    model: ModelInfo, budget: Budget, target: int, at_target: list[Plan], plans: list[Plan]
) -> list[str]:
    gpu_ram = f"{format_bytes(budget.ram_bytes)} of RAM" + (
        f" and {format_bytes(budget.gpus[0].free_bytes)} of VRAM"
        if budget.gpus and budget.can_offload
        else ""
    )
    smallest = min(at_target, key=lambda p: p.ram_bytes + p.vram_bytes)
    need = smallest.ram_bytes + smallest.vram_bytes
    reasons = [
        f"{display_name(model)} does not fit at any quantization with {a_number(target)}-token context: even "
        f"{smallest.quant} needs {format_bytes(need)}, and this machine can give it {gpu_ram} "
        "(after keeping some free for the system)."
    ]
    short = min((p for p in plans if p.fits != "no"), key=lambda p: -p.n_ctx, default=None)
    if short is not None:
        reasons.append(f"It would fit as {short.quant} with {a_number(short.n_ctx)}-token context.")
    reasons.append(
        f"It would fit as {smallest.quant} with {format_bytes(max(0, need - budget.ram_bytes))} more free "
        "RAM, or a GPU with that much free VRAM. A smaller model from the catalog may serve better."
    )
    return reasons

"""What the advisor predicts for one run as it was really run: the file, its settings and the
machine, and the speed at the depth it was measured at.

A measured run is stored beside this prediction (:class:`app.core.advice.profiles.Predicted`), so
that later its measurement can be compared with the speed model's terms (calibration,
:mod:`app.core.advice.speed_calibration`) and with the memory the plan promised (the residual that
corrects the plans near it, :mod:`app.core.advice.measured_runs`). The prediction is made without
any calibration: the terms are the speed model's own.
"""

from __future__ import annotations

from dataclasses import replace

from app.core.advice.estimate import tensors_for
from app.core.advice.profiles import Predicted
from app.core.advice.recommend import Budget, best_plan
from app.core.advice.speed import SPEED_MODEL_VERSION, predict_speed
from app.core.model.info import ModelInfo


def predict_run(
    model: ModelInfo,
    budget: Budget,
    *,
    quant: str,
    n_ctx: int,
    type_k: str,
    n_gpu_layers: int,
    moe_cpu_layers: int,
    n_threads: int,
    depth: int,
) -> Predicted:
    """The prediction for ``model`` run with these settings on ``budget``'s machine, its generation
    speed at ``depth`` tokens of context. ``n_gpu_layers`` as llama.cpp takes it: -1 is all."""
    ngl = model.n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    plain = replace(budget, cpu_threads=n_threads, speed_calibration=())
    tensors = tensors_for(model, quant)
    plan = best_plan(model, quant, n_ctx, plain, type_k=type_k, tensors=tensors, n_gpu_layers=ngl,
                     moe_cpu_layers=moe_cpu_layers if model.is_moe else None)  # fmt: skip
    gpus = plain.gpus
    speed = predict_speed(
        model, tensors, plan.estimate,
        cpu_bandwidth_bytes_s=plain.ram_bandwidth_bytes_s,
        gpu_bandwidth_bytes_s={f"GPU{i}": g.bandwidth_bytes_s for i, g in enumerate(gpus)},
        cpu_threads=n_threads, gpu_names={f"GPU{i}": g.name for i, g in enumerate(gpus)},
        depth_tokens=depth, host_link_bytes_s=gpus[0].host_link_bytes_s if gpus else None,
    )  # fmt: skip
    terms = dict(speed.terms)
    return Predicted(
        speed_model=SPEED_MODEL_VERSION, ram_bytes=plan.ram_bytes, vram_bytes=plan.vram_bytes,
        tok_s=speed.tok_s, prompt_tok_s=speed.prompt_tok_s, **terms,
    )  # fmt: skip

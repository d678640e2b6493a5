"""Mixture-of-experts placement: the experts of the first N layers in RAM, the rest on the GPU
(llama.cpp's --n-cpu-moe / --cpu-moe), as the estimator, the speed model and the planner see it."""

from __future__ import annotations

import re

import pytest

from app.core.advice.estimate import RunSettings, estimate, tensors_for
from app.core.advice.placement import EXPERTS_PATTERN, expert_override_pattern, is_expert_tensor
from app.core.advice.reasons import gpu_layers_text
from app.core.advice.recommend import Budget, GpuBudget, advise, best_plan
from app.core.advice.speed import predict_speed
from app.core.model.catalog import find_entry
from app.core.model.info import layer_of
from app.core.model.source import model_from_catalog
from app.core.units import GIB

QWEN3_MOE = model_from_catalog(find_entry("qwen3-30b-a3b"))  # 48 layers, 128 experts, 8 used
DENSE = model_from_catalog(find_entry("qwen3-8b"))
QUANT = "Q4_K_M"
TENSORS = tensors_for(QWEN3_MOE, QUANT)
# A laptop with an 8 GB card: DDR5 dual channel, an RTX 4060 Laptop's 256 GB/s, 8 cores.
LAPTOP = Budget(ram_bytes=28 * GIB, ram_bandwidth_bytes_s=60e9, cpu_isa=("AVX2",), cpu_threads=8,
                gpus=(GpuBudget("NVIDIA GeForce RTX 4060 Laptop GPU", int(6.9 * GIB), 256e9),))  # fmt: skip


def _settings(ngl: int, moe: int, n_ctx: int = 8192) -> RunSettings:
    return RunSettings(n_ctx=n_ctx, n_gpu_layers=ngl, moe_cpu_layers=moe, has_gpu=True, cpu_isa=("AVX2",))


def _expert_bytes(first_layers: int) -> int:
    return sum(
        t.n_bytes
        for t in TENSORS
        if is_expert_tensor(t.name) and (li := layer_of(t.name)) is not None and li < first_layers
    )


def test_the_override_pattern_matches_exactly_the_experts_of_the_first_layers() -> None:
    names = [t.name for t in TENSORS]
    pattern = expert_override_pattern(2)
    assert pattern is not None and expert_override_pattern(0) is None
    hit = {n for n in names if re.search(pattern, n)}
    assert hit == {f"blk.{il}.ffn_{p}_exps.weight" for il in (0, 1) for p in ("gate", "up", "down")}
    # blk.10-19 and blk.21 start like blk.1 / blk.2 but are other layers
    assert not any(
        re.search(pattern, n) for n in names if n.startswith(("blk.1", "blk.2")) and layer_of(n) not in (1, 2)
    )
    everything = expert_override_pattern(QWEN3_MOE.n_layer)
    assert everything is not None
    assert {n for n in names if re.search(everything, n)} == {
        n for n in names if re.search(EXPERTS_PATTERN, n)
    }
    # the router and shared experts stay with their layer
    assert not is_expert_tensor("blk.0.ffn_gate_inp.weight") and not is_expert_tensor(
        "blk.0.ffn_up_shexp.weight"
    )
    assert is_expert_tensor("blk.3.ffn_gate_up_exps.weight") and is_expert_tensor("blk.3.ffn_down_exps.bias")


@pytest.mark.parametrize("moe", [1, 20, 48])
def test_experts_in_ram_move_exactly_their_bytes_from_vram_to_ram(moe: int) -> None:
    ngl = QWEN3_MOE.n_layer + 1
    base = estimate(QWEN3_MOE, QUANT, _settings(ngl, 0), tensors=TENSORS)
    moved = estimate(QWEN3_MOE, QUANT, _settings(ngl, moe), tensors=TENSORS)
    experts = _expert_bytes(moe)
    assert experts > 0
    gpu0, gpu1 = base.device("GPU0"), moved.device("GPU0")
    assert gpu0.weights_bytes - gpu1.weights_bytes == experts
    assert moved.device("CPU").weights_bytes - base.device("CPU").weights_bytes == experts
    assert gpu0.kv_bytes == gpu1.kv_bytes  # attention and its cache stay on the GPU
    # a prompt batch copies one stacked expert tensor at a time into the GPU's compute buffer
    largest = max(t.n_bytes for t in TENSORS if is_expert_tensor(t.name) and layer_of(t.name) == 0)
    assert gpu1.compute_bytes - gpu0.compute_bytes == largest
    assert moved.vram_bytes < base.vram_bytes - experts + 2 * largest


def test_a_token_reads_only_the_experts_it_uses_wherever_they_are() -> None:
    gpu = {"GPU0": 256e9}
    all_gpu = estimate(QWEN3_MOE, QUANT, _settings(49, 0), tensors=TENSORS)
    split = estimate(QWEN3_MOE, QUANT, _settings(49, 48), tensors=TENSORS)
    fast = predict_speed(QWEN3_MOE, TENSORS, all_gpu, cpu_bandwidth_bytes_s=60e9, gpu_bandwidth_bytes_s=gpu)
    slow = predict_speed(QWEN3_MOE, TENSORS, split, cpu_bandwidth_bytes_s=60e9, gpu_bandwidth_bytes_s=gpu)
    share = QWEN3_MOE.n_expert_used / QWEN3_MOE.n_expert
    experts = _expert_bytes(48)
    rest = sum(t.n_bytes for t in TENSORS if not is_expert_tensor(t.name) and t.name != "token_embd.weight")
    kv = 4096 * QWEN3_MOE.n_layer * 2 * 4 * 128 * 2  # half the context, K and V, 4 KV heads of 128, f16
    assert fast.bytes_per_token == pytest.approx(rest + experts * share + kv, rel=0.001)
    assert slow.bytes_per_token == fast.bytes_per_token  # moving experts changes where, not what
    assert slow.tok_s < fast.tok_s
    assert fast.bytes_per_token < 0.2 * sum(t.n_bytes for t in TENSORS)


def test_the_planner_keeps_experts_in_ram_rather_than_splitting_layers_on_an_8gb_gpu() -> None:
    plan = best_plan(QWEN3_MOE, QUANT, 8192, LAPTOP, tensors=TENSORS)
    assert plan.fits == "partial"
    assert plan.n_gpu_layers == QWEN3_MOE.n_layer + 1 and 0 < plan.moe_cpu_layers < QWEN3_MOE.n_layer
    # the fewest layers whose experts fit nowhere else: one layer fewer overflows the GPU
    fewer = estimate(QWEN3_MOE, QUANT, _settings(49, plan.moe_cpu_layers - 1), tensors=TENSORS)
    assert plan.vram_bytes <= LAPTOP.gpus[0].free_bytes < fewer.vram_bytes
    split = [o for o in plan.alternatives if o.moe_cpu_layers == 0]
    assert len(split) == 1 and split[0].fits and 0 < split[0].n_gpu_layers < QWEN3_MOE.n_layer
    assert plan.speed.tok_s > split[0].tok_s  # the fastest that fits (tests/gpu checks the claim)
    assert plan.to_dict()["moe_cpu_layers"] == plan.moe_cpu_layers
    assert gpu_layers_text(plan) == f"49, experts of {plan.moe_cpu_layers} in RAM"


def test_with_too_little_vram_for_attention_alone_all_experts_stay_in_ram_and_layers_split() -> None:
    tiny = Budget(ram_bytes=28 * GIB, ram_bandwidth_bytes_s=60e9, cpu_threads=8,
                  gpus=(GpuBudget("GPU", int(2.0 * GIB), 256e9),))  # fmt: skip
    plan = best_plan(QWEN3_MOE, QUANT, 8192, tiny, tensors=TENSORS)
    assert plan.fits == "partial"
    options = {
        (plan.n_gpu_layers, plan.moe_cpu_layers),
        *((o.n_gpu_layers, o.moe_cpu_layers) for o in plan.alternatives),
    }
    assert any(moe == QWEN3_MOE.n_layer and 0 < ngl <= QWEN3_MOE.n_layer for ngl, moe in options)
    assert plan.vram_bytes <= tiny.gpus[0].free_bytes


def test_the_users_choice_is_kept_and_the_other_half_is_searched() -> None:
    every = best_plan(QWEN3_MOE, QUANT, 8192, LAPTOP, tensors=TENSORS, moe_cpu_layers=48)
    assert (
        every.moe_cpu_layers == 48
        and every.n_gpu_layers == 49
        and gpu_layers_text(every) == "49, experts in RAM"
    )
    fixed_layers = best_plan(QWEN3_MOE, QUANT, 8192, LAPTOP, tensors=TENSORS, n_gpu_layers=49)
    auto = best_plan(QWEN3_MOE, QUANT, 8192, LAPTOP, tensors=TENSORS)
    assert fixed_layers.moe_cpu_layers == auto.moe_cpu_layers > 0  # -ngl 99 with the experts searched
    none = best_plan(QWEN3_MOE, QUANT, 8192, LAPTOP, tensors=TENSORS, moe_cpu_layers=0)
    assert none.moe_cpu_layers == 0 and none.n_gpu_layers < 49  # the user asked for a layer split


def test_dense_models_have_no_expert_placement() -> None:
    plan = best_plan(DENSE, QUANT, 4096, LAPTOP, moe_cpu_layers=10)
    assert plan.moe_cpu_layers == 0 and plan.alternatives == ()
    assert gpu_layers_text(plan) == str(plan.n_gpu_layers)


def test_the_advice_says_where_the_experts_are_and_what_else_was_weighed() -> None:
    advice = advise(QWEN3_MOE, LAPTOP, n_ctx=8192, quants=["Q4_K_M", "Q6_K"])
    rec = advice.recommended
    assert rec is not None and rec.moe_cpu_layers > 0
    text = " ".join(advice.reasons)
    assert (
        f"experts of its first {rec.moe_cpu_layers} of 48 layers in RAM and everything else on the GPU"
        in text
    )
    assert "Placements weighed" in text and "layers on the GPU: ~" in text


def test_a_model_released_with_mxfp4_experts_is_offered_as_its_publishers_ship_it() -> None:
    gpt_oss = model_from_catalog(find_entry("gpt-oss-20b"))
    advice = advise(gpt_oss, LAPTOP, n_ctx=4096)
    plans = {p.quant: p for p in advice.plans}
    assert "MXFP4_MOE" in plans and "MXFP4_MOE" not in {
        p.quant for p in advise(DENSE, LAPTOP, n_ctx=4096).plans
    }
    table = tensors_for(gpt_oss, "MXFP4_MOE")
    assert {t.type_name for t in table if is_expert_tensor(t.name) and t.name.endswith(".weight")} == {
        "MXFP4"
    }
    assert {t.type_name for t in table if len(t.shape) == 2 and not is_expert_tensor(t.name)} <= {
        "Q8_0",
        "F32",
    }
    assert plans["MXFP4_MOE"].file_bytes < plans["Q8_0"].file_bytes  # Q8_0 would widen the experts

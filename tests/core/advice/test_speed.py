"""The speed model's arithmetic on real tensor tables: what a token reads, what a prompt token costs,
and where the time goes. No speed is measured here: the model against measurements is
``tests/bench/speed_model_check.py`` (kept current by ``tests/test_readme_numbers.py``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.core.advice import speed, speed_cpu
from app.core.advice.buffers import kv_layer_bytes
from app.core.advice.estimate import tensors_for
from app.core.advice.recommend import Budget, GpuBudget, Plan, best_plan
from app.core.model.info import ModelInfo
from app.core.model.source import load_model, model_from_gguf
from app.core.units import GIB

CPU = Budget(ram_bytes=64 * GIB, ram_bandwidth_bytes_s=30e9, can_offload=False, cpu_isa=("AVX2", "AVX512F"))


def gpu_budget(name: str, bandwidth: float = 3.35e12) -> Budget:
    return Budget(ram_bytes=64 * GIB, ram_bandwidth_bytes_s=30e9, gpus=(GpuBudget(name, 80 * GIB, bandwidth),),
                  cpu_isa=("AVX2",))  # fmt: skip


def predict(
    model: ModelInfo,
    quant: str,
    budget: Budget,
    *,
    cpu_threads: int | None = None,
    depth_tokens: int | None = None,
) -> tuple[Plan, speed.SpeedEstimate]:
    plan = best_plan(model, quant, 4096, budget)
    est = speed.predict_speed(
        model, tensors_for(model, quant), plan.estimate, cpu_bandwidth_bytes_s=budget.ram_bandwidth_bytes_s,
        gpu_bandwidth_bytes_s={f"GPU{i}": g.bandwidth_bytes_s for i, g in enumerate(budget.gpus)},
        gpu_names={f"GPU{i}": g.name for i, g in enumerate(budget.gpus)}, cpu_threads=cpu_threads,
        depth_tokens=depth_tokens,
    )  # fmt: skip
    return plan, est


def test_a_moe_token_reads_only_the_experts_it_uses() -> None:
    model = load_model("qwen3-30b-a3b")
    tensors = tensors_for(model, "Q4_K_M")
    experts = sum(t.n_bytes for t in tensors if "_exps" in t.name)
    _, eight = predict(model, "Q4_K_M", CPU, depth_tokens=0)
    _, sixteen = predict(replace(model, n_expert_used=16), "Q4_K_M", CPU, depth_tokens=0)
    # each extra expert per token adds its 1/n_expert share of the expert bytes, nothing else
    assert sixteen.bytes_per_token - eight.bytes_per_token == pytest.approx(
        experts * 8 / model.n_expert, rel=1e-6
    )
    assert eight.bytes_per_token < experts / 4  # far below the whole model: 8 of 128 experts
    assert sixteen.tok_s < eight.tok_s


def test_a_tied_embedding_is_read_in_full_as_the_output(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    assert model.tied_embeddings
    plan, est = predict(model, str(model.file_type), CPU, depth_tokens=0)
    embd = next(t for t in model.tensors if t.name == "token_embd.weight")
    untied = speed.device_work(replace(model, tied_embeddings=False), model.tensors, plan.estimate, 0)
    assert est.bytes_per_token - sum(untied["CPU"].read_bytes.values()) == embd.n_bytes


def test_generation_reads_the_kv_cache_up_to_its_depth(gemma3_path: Path) -> None:
    model = model_from_gguf(gemma3_path)
    plan, shallow = predict(model, str(model.file_type), CPU, depth_tokens=256)
    _, deep = predict(model, str(model.file_type), CPU, depth_tokens=2048)
    s = plan.estimate.settings
    kv = [
        kv_layer_bytes(model, s, il, n, min(n, model.sliding_window))
        for n in (256, 2048)
        for il in range(model.n_layer)
    ]
    assert deep.bytes_per_token - shallow.bytes_per_token == sum(kv[model.n_layer :]) - sum(
        kv[: model.n_layer]
    )
    assert model.has_swa and deep.tok_s < shallow.tok_s


def test_prompt_speed_grows_with_the_cores_and_the_vector_width(gemma3_path: Path) -> None:
    model = model_from_gguf(gemma3_path)
    q = str(model.file_type)
    _, two = predict(model, q, CPU, cpu_threads=2)
    _, four = predict(model, q, CPU, cpu_threads=4)
    _, avx2 = predict(model, q, replace(CPU, cpu_isa=("AVX2",)), cpu_threads=4)
    assert four.prompt_tok_s == pytest.approx(
        2 * two.prompt_tok_s
    )  # compute bound, not by the bandwidth here
    assert avx2.prompt_tok_s < four.prompt_tok_s


def test_generation_takes_the_memory_and_what_few_cores_can_do(gemma3_path: Path) -> None:
    """Two cores read at the measured bandwidth, one reads less (a core cannot keep enough loads in
    flight); the dot products' and the layers' own work is split among the threads, so more threads
    help generation only by that part: never in proportion (llama-bench here: Gemma-3-270M 54 tok/s
    on one thread, 75 on two)."""
    model = model_from_gguf(gemma3_path)
    q = str(model.file_type)
    one, two, eight = (predict(model, q, CPU, cpu_threads=t)[1] for t in (1, 2, 8))
    assert one.tok_s < two.tok_s < eight.tok_s < 2 * two.tok_s
    assert two.tok_s < 1.8 * one.tok_s
    terms = dict(two.terms)
    assert terms["cpu_bytes"] > 0 and terms["cpu_compute"] > 0 and terms["cpu_fixed"] > 0
    assert dict(eight.terms)["cpu_bytes"] == terms["cpu_bytes"]  # the bandwidth, not the threads, binds


def test_short_rows_cost_more_than_their_bytes(gemma3_path: Path) -> None:
    """Each row's dot product has a cost of its own: Gemma-3-270M's 640-wide Q8_0 output matrix
    (262,144 rows) takes longer than its bytes at the bandwidth, a 4096-wide one of the same bytes
    less so (perf here: 52 % of Gemma-3-270M's decode in the Q8_0 dot product for 74 % of its bytes
    read at a lower rate than Gemma-3-1B's 1152-wide rows)."""
    w = speed.DeviceWork(read_bytes={"block": 178_257_920}, weights={"block": 167_772_160.0})
    narrow = replace(w, rows={"block": 262_144.0})
    wide = replace(w, rows={"block": 40_960.0})
    model = model_from_gguf(gemma3_path)
    cost = {t: speed_cpu.cpu_generation_s(x, model, 40e9, 2) for t, x in (("narrow", narrow), ("wide", wide))}
    assert cost["narrow"][0] == cost["wide"][0]  # the same bytes
    assert cost["narrow"][1] > 2 * cost["wide"][1] > 0  # the rows' own work
    assert sum(cost["narrow"]) > 1.15 * sum(cost["wide"])  # a sixth more than the same bytes in long rows


def test_a_gated_delta_net_layer_costs_more_than_a_mamba2_layer() -> None:
    """Qwen3.5's delta rule takes far longer per token than Granite-4.0-H's Mamba-2 scan of a state
    of about the same size (the records: on one thread Qwen3.5-0.8B writes 32 tok/s, Granite-4.0-H-350M
    73, and the fit gives the delta rule 2.6× the scan's cost per element of the state)."""
    import json

    from tests.gpu.gpu_proof import model_from_summary

    records = json.loads((Path(__file__).parents[2] / "bench/results/speed_records.json").read_text())
    qwen35, granite = (
        model_from_summary(name, records["models"][name])
        for name in ("qwen3.5-0.8b-Q4_K_M.gguf", "granite-4.0-h-350m-Q4_K_M.gguf")
    )
    one_layer = speed.DeviceWork(layers=1, recurrent_layers=1)
    cost = {}
    for m in (qwen35, granite):
        cols = speed_cpu.cpu_generation_columns(one_layer, m, 40e9, 1)
        state = [k for k in cols if k.startswith("state:")]
        assert len(state) == 1
        cost[state[0]] = cols[state[0]] * speed_cpu.CPU_GEN_COSTS[state[0]]
    assert set(cost) == {"state:gated_delta_net", "state:mamba2"}
    assert cost["state:gated_delta_net"] > 2 * cost["state:mamba2"] > 0


def test_a_gpu_is_known_by_its_name_and_else_by_its_bandwidth() -> None:
    model = load_model("llama-3.1-8b-instruct")
    _, h100 = predict(model, "Q4_K_M", gpu_budget("NVIDIA H100 80GB HBM3"))
    _, h200 = predict(model, "Q4_K_M", gpu_budget("NVIDIA H200", 4.8e12))
    _, unknown = predict(model, "Q4_K_M", gpu_budget("Some GPU"))
    assert h200.tok_s > h100.tok_s  # more bandwidth
    assert h200.prompt_tok_s == pytest.approx(h100.prompt_tok_s)  # the same compute
    assert unknown.prompt_tok_s < h100.prompt_tok_s  # 150 FLOP per byte/s, less than an H100's 295
    assert h100.bound == "GPU bandwidth"


def test_k_quants_decode_below_their_bytes_on_a_gpu() -> None:
    model = load_model("llama-3.2-3b-instruct")
    budget = gpu_budget("NVIDIA H100 80GB HBM3")
    (_, q4), (_, q8) = predict(model, "Q4_K_M", budget), predict(model, "Q8_0", budget)
    bytes_ratio = q8.bytes_per_token / q4.bytes_per_token
    assert 1 < q4.tok_s / q8.tok_s < bytes_ratio


def test_a_partial_offload_adds_the_cpu_layers_time(gemma3_path: Path) -> None:
    model = model_from_gguf(gemma3_path)
    q = str(model.file_type)
    budget = gpu_budget("NVIDIA H100 80GB HBM3")
    full = best_plan(model, q, 4096, budget)
    half = best_plan(model, q, 4096, budget, n_gpu_layers=model.n_layer // 2)
    cpu_only = best_plan(model, q, 4096, replace(budget, gpus=(), can_offload=False))
    assert cpu_only.speed.tok_s < half.speed.tok_s < full.speed.tok_s
    assert half.speed.bound.startswith("CPU")


@pytest.mark.parametrize(("type_name", "family"), [("Q4_K", "k"), ("Q6_K", "k"), ("IQ4_XS", "k"), ("Q5_0", "q5"),
                                                   ("Q8_0", "block"), ("Q4_0", "block"), ("F16", "block")])  # fmt: skip
def test_type_families(type_name: str, family: str) -> None:
    assert speed.gen_family(type_name) == family


@pytest.mark.parametrize(("type_name", "family"), [("Q4_1", "vec"), ("Q5_1", "vec"), ("Q8_0", "block"),
                                                   ("Q5_0", "q5"), ("F16", "block"), ("Q6_K", "k"),
                                                   ("Q4_0", "repacked"), ("Q4_K", "repacked")])  # fmt: skip
def test_prompt_families(type_name: str, family: str) -> None:
    """The CPU kernel a prompt's matmul takes: Q4_1/Q5_1 are the block quants llamafile's sgemm
    has no kernel for (ggml's row-by-row dot product), Q4_0/Q4_K are repacked on AVX2."""
    from app.core.advice.run_settings import repack_types
    from app.core.model.gguf_header import TensorInfo

    t = TensorInfo("blk.0.ffn_up.weight", (2048, 8192), type_name)
    assert speed.prompt_family(t, repack_types(("AVX2",))) == family


def test_a_q4_1_prompt_is_slower_than_q8_0s_of_the_same_shapes(smollm2_path: Path) -> None:
    """Q4_1 reads fewer bytes per token than Q8_0 but multiplies a prompt through a slower kernel
    (llama-bench here: SmolLM2 pp512 ~250 tok/s at Q4_1, ~520 at Q8_0)."""
    model = model_from_gguf(smollm2_path)
    _, q4_1 = predict(model, "Q4_1", CPU, cpu_threads=2)
    _, q8_0 = predict(model, "Q8_0", CPU, cpu_threads=2)
    assert q4_1.bytes_per_token < q8_0.bytes_per_token
    assert q4_1.prompt_tok_s < 0.8 * q8_0.prompt_tok_s

"""The one chat planner: what the terminal and the window load, predicted and judged the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.advice.chat_plan import CTX_STEP, ChatOverrides, default_ctx, plan_chat
from app.core.advice.estimate import RunSettings, estimate
from app.core.advice.recommend import DEFAULT_CTX, Budget, GpuBudget, best_plan
from app.core.errors import DoesNotFitError, TailorError
from app.core.model.source import load_model, model_from_gguf
from app.core.units import GIB, MIB
from app.engine.protocol import Load

PLENTY = Budget(ram_bytes=16 * GIB, ram_bandwidth_bytes_s=20e9, cpu_isa=("AVX2",))


def _cuda(free_bytes: int, ram_bytes: int = 16 * GIB) -> Budget:
    gpu = GpuBudget(name="Laptop GPU", free_bytes=free_bytes, bandwidth_bytes_s=300e9, backend="cuda")
    return Budget(ram_bytes=ram_bytes, ram_bandwidth_bytes_s=20e9, gpus=(gpu,), can_offload=True,
                  cpu_isa=("AVX2", "AVX512F"))  # fmt: skip


def test_default_plan_fits_and_becomes_exactly_that_load(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    planned = plan_chat(model, PLENTY)
    assert planned.fits and planned.refusal() is None and planned.nearest is None
    # The default context is the advisor's, capped by what the model was trained for.
    assert planned.settings.n_ctx == default_ctx(model) == min(DEFAULT_CTX, model.n_ctx_train)
    assert planned.quant == model.file_type == "Q4_1"
    load = Load.from_plan(planned, n_threads=3)
    s = planned.settings
    assert (load.model_path, load.n_ctx, load.n_gpu_layers, load.type_k, load.type_v, load.n_threads) == (
        str(smollm2_path), s.n_ctx, s.n_gpu_layers, s.type_k, s.type_v, 3)  # fmt: skip
    assert load.flash_attn == ("on" if s.flash_attn else "off")
    assert planned.predicted == {"ram_bytes": planned.plan.ram_bytes, "vram_bytes": planned.plan.vram_bytes}
    assert planned.check() is planned


def test_kv_cache_type_is_honoured_and_predicted(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    f16 = plan_chat(model, PLENTY, ChatOverrides(n_ctx=8192))
    q8 = plan_chat(model, PLENTY, ChatOverrides(n_ctx=8192, type_kv="Q8_0"))
    assert (q8.settings.type_k, q8.settings.type_v) == ("Q8_0", "Q8_0")
    assert Load.from_plan(q8).type_k == Load.from_plan(q8).type_v == "Q8_0"
    kv = [p.plan.estimate.device("CPU").kv_bytes for p in (f16, q8)]
    assert kv[1] < kv[0] * 0.6  # Q8_0 is 8.5 bits per value against 16


def test_manual_gpu_layers_are_predicted_with_the_machines_backend(smollm2_path: Path) -> None:
    """The window used to predict a manual split with a bare RunSettings (no CUDA rules, no ISA)."""
    model = model_from_gguf(smollm2_path)
    budget = _cuda(free_bytes=8 * GIB)
    planned = plan_chat(model, budget, ChatOverrides(n_gpu_layers=10))
    s = planned.settings
    assert (s.n_gpu_layers, s.gpu_backend, s.has_gpu, s.cpu_isa) == (10, "cuda", True, ("AVX2", "AVX512F"))
    same = best_plan(model, "Q4_1", planned.settings.n_ctx, budget, n_gpu_layers=10)
    assert planned.plan.estimate == same.estimate  # exactly what `advise` predicts for that split
    bare = estimate(model, None, RunSettings(n_ctx=s.n_ctx, n_gpu_layers=10))
    assert bare.vram_bytes < planned.plan.vram_bytes  # the CUDA context and buffers were missing
    assert planned.fits and planned.plan.fits == "partial"


def test_a_plan_that_does_not_fit_is_refused_with_the_nearest_that_does(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    need = {c: plan_chat(model, PLENTY, ChatOverrides(n_ctx=c)).plan.ram_bytes for c in (2048, 8192)}
    budget = Budget(ram_bytes=(need[2048] + need[8192]) // 2, ram_bandwidth_bytes_s=20e9)
    planned = plan_chat(model, budget, ChatOverrides(n_ctx=8192))
    assert not planned.fits
    nearest = planned.nearest
    assert nearest is not None and nearest.fits != "no" and nearest.quant == "Q4_1"
    assert 2048 <= nearest.n_ctx < 8192 and nearest.n_ctx % CTX_STEP == 0
    # The nearest is the longest context that fits: one step more does not.
    assert plan_chat(model, budget, ChatOverrides(n_ctx=nearest.n_ctx + CTX_STEP)).fits is False
    refusal = planned.refusal()
    assert refusal is not None and "8,192-token context" in refusal
    with pytest.raises(DoesNotFitError) as err:
        planned.check()
    assert f"{nearest.n_ctx:,}-token context" in (err.value.hint or "")
    forced = plan_chat(model, budget, ChatOverrides(n_ctx=8192, force=True))
    assert forced.check() is forced and forced.forced
    assert "swap" in (forced.risk() or "")  # RAM is what runs out
    assert forced.to_record()["forced"] is True


def test_too_many_gpu_layers_is_refused_and_the_advisors_split_offered(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    full = plan_chat(model, _cuda(free_bytes=8 * GIB), ChatOverrides(n_gpu_layers=model.n_layer + 1))
    budget = _cuda(free_bytes=full.plan.vram_bytes - 64 * MIB)
    planned = plan_chat(model, budget, ChatOverrides(n_gpu_layers=model.n_layer + 1))
    assert not planned.fits
    assert planned.nearest is not None and planned.nearest.n_ctx == planned.plan.n_ctx
    assert 0 < planned.nearest.n_gpu_layers < model.n_layer + 1
    assert "GPU memory" in (plan_chat(model, budget, ChatOverrides(n_gpu_layers=model.n_layer + 1,
                                                                   force=True)).risk() or "")  # fmt: skip


def test_nothing_fits_says_so() -> None:
    model = load_model("llama-3.2-1b-instruct")  # the catalog: not a file
    with pytest.raises(TailorError, match=r"not a local \.gguf"):
        plan_chat(model, PLENTY)


def test_nothing_fits_names_a_smaller_quantization(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    planned = plan_chat(model, Budget(ram_bytes=1 * MIB, ram_bandwidth_bytes_s=20e9))
    assert not planned.fits and planned.nearest is None
    assert "smaller quantization" in planned.suggestion()


def test_bad_overrides_are_one_line_errors(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    with pytest.raises(TailorError, match="KV cache type"):
        plan_chat(model, PLENTY, ChatOverrides(type_kv="Q3_K"))
    with pytest.raises(TailorError, match="at least 1 token"):
        plan_chat(model, PLENTY, ChatOverrides(n_ctx=-5))

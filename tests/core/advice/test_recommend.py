"""The advisor's choices on the real models under different budgets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.core.advice.recommend import Budget, GpuBudget, advise, best_plan
from app.core.model.gguf_header import read_gguf_file
from app.core.model.info import ModelInfo, model_info_from_header
from app.core.units import GIB, MIB


def _info(path: Path) -> ModelInfo:
    return model_info_from_header(read_gguf_file(path), source=str(path), source_kind="gguf")


def cpu_budget(ram: int) -> Budget:
    return Budget(ram_bytes=ram, ram_bandwidth_bytes_s=10e9, cpu_isa=("AVX2",))


def test_plenty_of_ram_gives_best_practical_quality(smollm2_path: Path) -> None:
    advice = advise(_info(smollm2_path), cpu_budget(16 * GIB))
    rec = advice.recommended
    assert rec is not None and rec.fits == "cpu" and rec.n_ctx == 4096
    # F16 fits too, but Q8_0 is indistinguishable (KLD 0.0014) and half the size.
    assert rec.quant == "Q8_0"
    assert any(p.quant == "F16" and p.fits == "cpu" for p in advice.plans)
    assert any("best quality that fits" in r for r in advice.reasons)


def test_file_quant_is_one_of_the_plans(smollm2_path: Path) -> None:
    advice = advise(_info(smollm2_path), cpu_budget(16 * GIB))
    assert any(p.quant == "Q4_1" for p in advice.plans)


def test_tight_ram_steps_down_and_says_what_next_level_needs(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    q8 = best_plan(model, "Q8_0", 4096, cpu_budget(16 * GIB))
    q6 = best_plan(model, "Q6_K", 4096, cpu_budget(16 * GIB))
    budget = cpu_budget((q8.ram_bytes + q6.ram_bytes) // 2)  # Q6_K fits, Q8_0 does not
    advice = advise(model, budget)
    assert advice.recommended is not None
    assert advice.recommended.quant == "Q6_K"
    assert any("next better level, Q8_0, needs" in r for r in advice.reasons)


def test_dominated_levels_are_never_recommended(gemma3_path: Path) -> None:
    advice = advise(_info(gemma3_path), cpu_budget(16 * GIB))
    q2 = next(p for p in advice.plans if p.quant == "Q2_K")
    assert q2.dominated_by is not None  # Q2_K is larger than Q3_K_S on Gemma's 640-wide rows


def test_nothing_fits_says_so_and_what_would(gemma3_path: Path) -> None:
    advice = advise(_info(gemma3_path), cpu_budget(100 * MIB))
    assert advice.recommended is None
    assert "does not fit" in advice.reasons[0]
    assert any("more free RAM" in r for r in advice.reasons)


def test_gpu_takes_all_layers_when_vram_allows(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    budget = Budget(ram_bytes=8 * GIB, ram_bandwidth_bytes_s=20e9,
                    gpus=(GpuBudget("Test GPU", 8 * GIB, 400e9),))  # fmt: skip
    rec = advise(model, budget).recommended
    assert rec is not None and rec.fits == "gpu" and rec.n_gpu_layers == model.n_layer + 1
    assert rec.vram_bytes > 0 and rec.speed.bound == "GPU bandwidth"


def test_small_gpu_gets_a_partial_split_that_fits(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    full = best_plan(model, "Q8_0", 4096, Budget(8 * GIB, 20e9, (GpuBudget("g", 8 * GIB, 400e9),)))
    # Not enough for everything: each layer is ~4 MiB here, the tied output matrix ~170 MiB.
    vram = full.vram_bytes - 30 * MIB
    budget = Budget(ram_bytes=8 * GIB, ram_bandwidth_bytes_s=20e9, gpus=(GpuBudget("g", vram, 400e9),))
    plan = best_plan(model, "Q8_0", 4096, budget)
    assert plan.fits == "partial"
    assert 0 < plan.n_gpu_layers < model.n_layer + 1
    assert plan.vram_bytes <= vram
    # one more layer would not fit
    from app.core.advice.estimate import estimate

    more = estimate(model, "Q8_0", replace(plan.estimate.settings, n_gpu_layers=plan.n_gpu_layers + 1))
    assert more.vram_bytes > vram


@pytest.mark.parametrize("ctx", [2048, 8192])
def test_requested_context_is_used(smollm2_path: Path, ctx: int) -> None:
    advice = advise(_info(smollm2_path), cpu_budget(16 * GIB), n_ctx=ctx)
    assert advice.recommended is not None and advice.recommended.n_ctx == ctx
    assert {p.n_ctx for p in advice.plans} == {ctx}


def test_slow_machine_keeps_good_quality_instead_of_chasing_speed() -> None:
    from app.core.model.source import load_model

    model = load_model("llama-3.1-8b-instruct")
    advice = advise(model, Budget(ram_bytes=16 * GIB, ram_bandwidth_bytes_s=8e9))
    rec = advice.recommended
    assert rec is not None
    assert all(p.speed.tok_s < 5 for p in advice.plans)  # nothing is comfortable on this machine
    # Not Q2_K or Q3_K: a few tenths of a token per second are not worth their loss. Q4_K_S (KLD
    # 0.043 published) is the fastest level still "good".
    assert rec.quant == "Q4_K_S" and rec.quality.kld <= 0.05
    assert any("slow" in w for w in advice.warnings)

"""This machine's speed calibration and the corrections of plans near a measured run (issue 19):
the fit recovers known factors, leaves alone what no run measured, counts only this machine's own
benchmark runs, changes the advisor's speeds on real models, and a run that needed more memory than
predicted keeps a plan that no longer fits from being recommended."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.core.advice import speed_calibration as sc
from app.core.advice.measured_runs import corrections, over_budget
from app.core.advice.profiles import Measured, Predicted, Profile, RunKey, utc_now
from app.core.advice.recommend import Budget, advise, best_plan, plan_settings
from app.core.advice.run_prediction import predict_run
from app.core.advice.speed import SPEED_MODEL_VERSION
from app.core.model.source import model_from_gguf
from app.core.units import MIB

MACHINE = "a" * 64
BUDGET = Budget(
    ram_bytes=8 << 30, ram_bandwidth_bytes_s=20e9, can_offload=False, cpu_isa=("AVX2",), cpu_threads=2
)


def _terms(cpu_bytes: float, cpu_fixed: float, cpu_prompt: float) -> Predicted:
    return Predicted(SPEED_MODEL_VERSION, 100 * MIB, 0, 1 / (cpu_bytes + cpu_fixed), 1 / cpu_prompt, cpu_bytes,
                     cpu_fixed, 0.0, 0.0, cpu_prompt, 0.0)  # fmt: skip


def _run(pred: Predicted, *, gen_s: float, prompt_s: float, i: int = 0, kind: str = "bench",
         machine: str = MACHINE, source: str = "here", llama: str = "llama-cpp-python 0.3.36",
         n_ctx: int = 1024, ram: int | None = None, file_id: str = "f" * 64) -> Profile:  # fmt: skip
    key = RunKey(file_id, "Q4_1", n_ctx, "F16", "F16", 0, 0, 2, False)
    when = f"2026-12-01T10:00:{i:02d}.000000+00:00"
    m = Measured("ok", ram, None, 0.5, 1 / gen_s, 1 / prompt_s, 600, when, 512, 128, 3)
    return Profile(key, m, machine, "cpu:x", llama, source, f"model {i}", kind=kind, predicted=pred)


def test_the_fit_recovers_the_factors_that_made_the_measurements() -> None:
    # three models of different mixes, measured as if bandwidth were 2x slower and layers 1.5x
    shapes = [(0.004, 0.005, 0.002), (0.010, 0.003, 0.004), (0.030, 0.004, 0.009), (0.020, 0.001, 0.006)]
    runs = [_run(_terms(b, f, p), gen_s=2 * b + 1.5 * f, prompt_s=0.7 * p, i=i, file_id=f"{i}" * 64)
            for i, (b, f, p) in enumerate(shapes)]  # fmt: skip
    cal = sc.calibrate(runs)
    assert cal is not None and (cal.gen_runs, cal.prompt_runs) == (4, 4)
    got = dict(cal.factors)
    assert got["cpu_bytes"] == pytest.approx(2.0, rel=0.03) and got["cpu_fixed"] == pytest.approx(
        1.5, rel=0.05
    )
    assert got["cpu_prompt"] == pytest.approx(0.7, rel=0.03)
    assert "gpu_bytes" not in got and "gpu_prompt" not in got  # no run measured a GPU: they keep 1


def test_one_run_cannot_tell_two_terms_apart_so_they_share_one_factor() -> None:
    cal = sc.calibrate([_run(_terms(0.004, 0.006, 0.002), gen_s=0.02, prompt_s=0.004)])
    assert cal is not None
    got = dict(cal.factors)
    assert got["cpu_bytes"] == got["cpu_fixed"] == pytest.approx(2.0, rel=0.01)  # both, not one running off
    assert got["cpu_prompt"] == pytest.approx(2.0, rel=0.01)


def test_two_runs_share_one_factor_per_device_and_four_tell_the_terms_apart() -> None:
    # SmolLM2-like (fixed costs first) and Gemma-like (bytes first): bandwidth 1.5x slower, fixed 2x
    mixes = [(0.004, 0.006), (0.012, 0.002), (0.008, 0.004), (0.020, 0.001)]
    runs = [_run(_terms(b, f, 0.002), gen_s=1.5 * b + 2 * f, prompt_s=0.002, i=i, file_id=f"{i}" * 64)
            for i, (b, f) in enumerate(mixes)]  # fmt: skip
    two = dict(sc.calibrate(runs[:2]).factors)  # type: ignore[union-attr]
    assert two["cpu_bytes"] == two["cpu_fixed"]  # one factor for the CPU, between the two
    assert 1.5 < two["cpu_bytes"] < 2.0
    four = dict(sc.calibrate(runs).factors)  # type: ignore[union-attr]
    assert four["cpu_bytes"] == pytest.approx(1.5, rel=0.03) and four["cpu_fixed"] == pytest.approx(
        2.0, rel=0.03
    )


def test_only_this_machines_own_benchmarks_with_this_llama_cpp_count() -> None:
    pred = _terms(0.004, 0.004, 0.002)
    good = _run(pred, gen_s=0.016, prompt_s=0.002, i=5)
    older_same_settings = _run(pred, gen_s=0.008, prompt_s=0.002, i=1)
    others = [
        _run(pred, gen_s=0.1, prompt_s=0.1, i=2, kind="answer", file_id="1" * 64),
        _run(pred, gen_s=0.1, prompt_s=0.1, i=3, machine="b" * 64, file_id="2" * 64),
        _run(pred, gen_s=0.1, prompt_s=0.1, i=4, source="imported", file_id="3" * 64),
        _run(pred, gen_s=0.1, prompt_s=0.1, i=6, llama="llama-cpp-python 0.4.0", file_id="4" * 64),
        _run(dataclasses.replace(pred, speed_model=SPEED_MODEL_VERSION + 1), gen_s=0.1, prompt_s=0.1, i=7,
             file_id="5" * 64),
    ]  # fmt: skip
    busy = _run(pred, gen_s=0.1, prompt_s=0.1, i=8, file_id="6" * 64)  # other programs took 60 % of the CPUs
    others.append(
        dataclasses.replace(busy, measured=dataclasses.replace(busy.measured, others_cpu_share=0.6))
    )
    usable = sc.usable_runs([older_same_settings, *others, good], machine_id=MACHINE,
                            llama_cpp="llama-cpp-python 0.3.36")  # fmt: skip
    assert usable == [
        good
    ]  # the newest of one setting; no answer, other machine, import, version or busy run
    assert sc.calibration_here([], machine_id=MACHINE) is None


def test_the_calibration_changes_the_advisors_speeds_on_a_real_model(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    plain = best_plan(model, "Q4_1", 2048, BUDGET)
    factors = (("cpu_bytes", 2.0), ("cpu_compute", 2.0), ("cpu_fixed", 2.0), ("cpu_prompt", 4.0))
    slow = best_plan(model, "Q4_1", 2048, dataclasses.replace(BUDGET, speed_calibration=factors))
    assert slow.speed.tok_s == pytest.approx(plain.speed.tok_s / 2)
    assert slow.speed.prompt_tok_s == pytest.approx(plain.speed.prompt_tok_s / 4)
    assert slow.speed.calibrated and not plain.speed.calibrated and slow.speed.terms == plain.speed.terms
    advice = advise(model, dataclasses.replace(BUDGET, speed_calibration=factors), n_ctx=2048)
    assert any("calibrated by benchmark runs here" in r for r in advice.reasons)


def test_a_run_corrects_the_plans_near_it_and_one_that_no_longer_fits_is_avoided(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    pred = predict_run(model, BUDGET, quant="Q4_1", n_ctx=1024, type_k="F16", n_gpu_layers=0, moe_cpu_layers=0,
                       n_threads=2, depth=600)  # fmt: skip
    # measured: 300 MiB more RAM than predicted and half the predicted speed
    run = _run(pred, gen_s=2 / pred.tok_s, prompt_s=1 / pred.prompt_tok_s, ram=pred.ram_bytes + 300 * MIB)
    run = dataclasses.replace(run, model_name="SmolLM2", key=dataclasses.replace(run.key, n_threads=2))
    advice = advise(model, BUDGET, quants=["Q4_1", "Q8_0"], contexts=(1024, 4096), n_ctx=4096)
    fixes = corrections(advice.plans, [run])
    by = {(p.quant, p.n_ctx): (p, f) for p, f in zip(advice.plans, fixes, strict=True)}
    plan, fix = by[("Q4_1", 4096)]
    assert fix is not None and fix["from"]["n_ctx"] == 1024 and fix["from"]["kind"] == "bench"
    assert fix["ram_bytes"] == plan.ram_bytes + 300 * MIB
    uncalibrated = 1 / sum(v for k, v in plan.speed.terms if k in ("cpu_bytes", "cpu_compute", "cpu_fixed"))
    assert fix["tok_s"] == pytest.approx(uncalibrated / 2, rel=1e-6)
    assert by[("Q4_1", 1024)][1] is None  # the plan that ran shows its run, not a correction
    assert by[("Q8_0", 4096)][1] is None  # another quantization is another file
    # a budget the prediction fits but the corrected plan does not
    tight = dataclasses.replace(BUDGET, ram_bytes=plan.ram_bytes + 100 * MIB)
    worse = over_budget(advice.plans, fixes, tight)
    assert plan_settings(plan) in worse and "more than" in worse[plan_settings(plan)]
    again = advise(
        model, tight, quants=["Q4_1", "Q8_0"], contexts=(1024, 4096), n_ctx=4096, failed_here=worse
    )
    assert again.recommended is None or again.recommended.quant != "Q4_1"
    assert any("used more memory than predicted" in r for r in again.reasons)


def test_runs_are_recorded_with_a_time_the_calibration_can_order() -> None:
    assert utc_now() > "2026-12-01T10:00:59.000000+00:00"

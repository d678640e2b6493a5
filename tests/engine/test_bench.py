"""The benchmark (issue 19): a real model measured in its own process as llama-bench measures it,
recorded with the prediction beside it, bounded by its time budget, cancellable, and a load that
runs out of memory recorded as such."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.core.advice import speed_calibration
from app.core.advice.profiles import file_identity
from app.core.advice.profiles_db import ProfileStore
from app.core.advice.speed import GEN_TERMS, PROMPT_TERMS
from app.engine import protocol as P
from app.engine.bench import bench_plan
from app.engine.client import EngineClient
from app.engine.errors import LoadFailed

pytestmark = pytest.mark.slow


def test_a_bench_measures_records_and_calibrates(smollm2_path: Path) -> None:
    load = P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=1)
    r = bench_plan(load, quant="Q4_1", model_name="SmolLM2", n_prompt=64, n_gen=16, reps=2, budget_s=60)
    assert (r.n_prompt, r.n_gen, r.reps, r.cancelled) == (64, 16, 2, False)
    for which in ("gen", "prompt"):
        runs = r.gen_tok_s if which == "gen" else r.prompt_tok_s
        assert len(runs) == 2 and min(runs) <= (r.median(which) or 0) <= max(runs) and min(runs) > 0
    assert r.peak_ram_bytes and r.peak_ram_bytes > 50 << 20 and r.load_s > 0 and r.n_threads == 1
    pred = r.predicted
    assert pred is not None and pred.tok_s > 0 and pred.prompt_tok_s > 0 and pred.ram_bytes > 50 << 20
    assert pred.gpu_bytes == pred.gpu_fixed == pred.gpu_prompt == 0  # n_gpu_layers 0: the CPU's terms only
    with ProfileStore() as store:
        [kept] = store.all()
    assert kept.kind == "bench" and kept.predicted == pred and kept.key.file_id == file_identity(smollm2_path)
    m = kept.measured
    assert (m.n_prompt, m.n_gen, m.reps, m.depth) == (64, 16, 2, 64 + 8)
    assert m.gen_tok_s == r.median("gen") and m.prompt_tok_s == r.median("prompt")
    # the run calibrates this machine: every factor bounded, only the terms the run exercised
    cal = speed_calibration.calibrate([kept])
    assert cal is not None and (cal.gen_runs, cal.prompt_runs, cal.models) == (1, 1, ("SmolLM2",))
    factors = dict(cal.factors)
    assert set(factors) <= {"cpu_bytes", "cpu_compute", "cpu_fixed", "cpu_prompt"}
    assert set(factors) & set(GEN_TERMS)
    assert set(factors) & set(PROMPT_TERMS)
    assert all(speed_calibration.FACTOR_MIN <= v <= speed_calibration.FACTOR_MAX for v in factors.values())


def test_the_time_budget_shrinks_a_run_and_bounds_the_repetitions(smollm2_path: Path) -> None:
    with EngineClient() as client:
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=2048, n_threads=1))
        # 0.05 s cannot hold even the warm-up: one repetition, cut to the smallest measurement
        out = client.bench(P.Bench(request_id=1, n_prompt=1024, n_gen=512, reps=5, budget_s=0.05))
        assert (out.n_prompt, out.n_gen, len(out.gen_tok_s), out.stop_reason) == (64, 16, 1, "done")
        # a context shorter than the measurement bounds it too
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=256, n_threads=1))
        out = client.bench(P.Bench(request_id=2, n_prompt=512, n_gen=128, reps=1, budget_s=30))
        assert out.n_prompt + out.n_gen < 256 and out.gen_tok_s and out.prompt_tok_s


def test_a_cancel_ends_the_measurement_with_what_was_done(gemma3_path: Path) -> None:
    cancel = threading.Event()
    stages: list[tuple[str, float]] = []

    def progress(stage: str, fraction: float) -> None:
        stages.append((stage, fraction))
        if stage == "measure":
            cancel.set()  # after the first repetition

    load = P.Load(model_path=str(gemma3_path), n_ctx=1024, n_threads=1)
    r = bench_plan(load, quant="Q4_K_M", model_name="Gemma", n_prompt=256, n_gen=64, reps=50, budget_s=600,
                   cancel=cancel, on_progress=progress)  # fmt: skip
    assert r.cancelled and 1 <= r.reps < 50
    assert stages[0][0] == "load" and ("measure", 1 / 50) in stages
    with ProfileStore() as store:
        assert [p.measured.reps for p in store.all()] == [r.reps]  # what was measured is kept


def test_a_load_that_runs_out_of_memory_is_recorded_as_such(smollm2_path: Path) -> None:
    huge = P.Load(model_path=str(smollm2_path), n_ctx=8_000_000, n_threads=1)  # a KV cache of ~170 GiB
    with pytest.raises(LoadFailed, match="memory"):
        bench_plan(huge, quant="Q4_1", model_name="SmolLM2")
    with ProfileStore() as store:
        [kept] = store.all()
    assert (kept.kind, kept.measured.outcome, kept.key.n_ctx) == ("load", "out_of_memory", 8_000_000)


def test_a_run_on_a_busy_machine_says_so_and_does_not_calibrate(smollm2_path: Path) -> None:
    load = P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=1)
    quiet = bench_plan(load, quant="Q4_1", model_name="SmolLM2", n_prompt=64, n_gen=16, reps=2, budget_s=60)
    spin = [
        sys.executable,
        "-c",
        "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass",
    ]
    hogs = [subprocess.Popen(spin) for _ in range(2 * (os.cpu_count() or 1))]  # other programs, busy
    try:
        busy = bench_plan(
            load, quant="Q4_1", model_name="SmolLM2", n_prompt=64, n_gen=32, reps=3, budget_s=60
        )
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert quiet.others_cpu_share is not None and busy.others_cpu_share is not None
    assert busy.busy and busy.others_cpu_share > speed_calibration.BUSY_SHARE > quiet.others_cpu_share
    with ProfileStore() as store:
        kept = store.all()
    assert [p.measured.others_cpu_share for p in kept] == [busy.others_cpu_share, quiet.others_cpu_share]
    assert speed_calibration.usable_runs(kept, machine_id=kept[0].machine_id) == [kept[1]]  # the quiet one

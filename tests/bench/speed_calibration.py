"""Benchmark: does one ``tailorlm bench`` of the two small test models make the advisor's speeds
right for the other models (issue 19's proof)?

For each condition (this machine as the app sees it, with a thread per core; and with one thread,
a setting the speed model's constants were not fitted to), in a private TAILORLM_HOME:

1. ``bench_plan`` (the engine's benchmark, llama-bench's measurement: pp512 into an empty cache,
   tg128 after it, up to 3 repetitions in 30 s) measures SmolLM2-135M and Gemma-3-270M; their
   profiles calibrate the speed model (``app.core.advice.speed_calibration``);
2. the same benchmark measures the other models of the accuracy benchmark — synthetic files with
   the exact shapes of catalog models (``tests/bench/estimate_accuracy.py`` caches them): dense
   Qwen2.5-0.5B, Llama-3.2-1B, Gemma-3-1B at several quantizations and the hybrid LFM2, Granite-4.0-H,
   Qwen3.5 — and each is compared with the advisor's prediction before calibration (the speed
   model with the RAM bandwidth the app measures on its first run, ``app.core.machine.bandwidth``,
   measured once at the start) and after (the same terms, scaled by the factors of step 1):
   error = predicted ÷ measured − 1.

The machine is shared: each run waits for the other processes to go quiet, records the share of
the CPUs they took while it measured, and is run again (up to 3 times) when that was more than
``speed_calibration.BUSY_SHARE`` — a busy run would not calibrate the app either. And it drifts: the
same model's pp512 moved 20 % between two runs an hour apart, more than the errors measured here.
So every model, the two small ones included, is benchmarked in each of ``--rounds`` rounds, the
order rotating, and its figures are the medians over the rounds; the two small models' medians
stand for their one bench (one profile each, as the app would have).

Prints JSON: per condition, the factors, every model's measured median (min–max), both predictions
and errors, and the median and worst absolute error of each. ``--write`` stores it as
``tests/bench/results/speed_calibration.json``, which the README's table is generated from.

    flock /tmp/work/bench.lock python tests/bench/speed_calibration.py [--rounds 3] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import models  # noqa: E402
from tests.bench.engine_speed import Others  # noqa: E402
from tests.bench.estimate_accuracy_modern import case_file  # noqa: E402
from tests.bench.report import emit  # noqa: E402

OUT = ROOT / "tests" / "bench" / "results" / "speed_calibration.json"
ATTEMPTS = 3
N_CTX = 1024  # room for the 512-token prompt and the 128 tokens after it
OTHERS = (
    ("qwen2.5-0.5b-instruct", "Q4_K_M"), ("qwen2.5-0.5b-instruct", "Q8_0"),
    ("llama-3.2-1b-instruct", "Q4_K_M"), ("llama-3.2-1b-instruct", "Q6_K"), ("llama-3.2-1b-instruct", "Q8_0"),
    ("llama-3.2-1b-instruct", "Q4_1"), ("gemma-3-1b-it", "Q4_K_M"),
    ("lfm2-350m", "Q4_K_M"), ("granite-4.0-h-350m", "Q4_K_M"), ("qwen3.5-0.8b", "Q4_K_M"),
)  # fmt: skip


def _bench(path: Path, threads: int) -> dict[str, Any]:
    from app.core.advice.profiles_db import ProfileStore
    from app.core.library.header_facts import describe
    from app.engine import protocol as P
    from app.engine.bench import bench_plan

    facts = describe([path])
    load = P.Load(model_path=str(path), n_ctx=N_CTX, n_threads=threads, flash_attn="on")
    shares = []
    for _ in range(ATTEMPTS):  # a run other programs disturbed is run again (and does not calibrate)
        Others().wait_for_quiet()
        result = bench_plan(load, quant=str(facts["quant"]), model_name=path.stem)
        shares.append(result.others_cpu_share)
        if not result.busy:
            break
    with ProfileStore() as store:
        [profile] = store.all(limit=1)
    d = result.to_dict()
    return {"model": path.name, "others_cpu_share": shares, "gen_tok_s": d["gen_tok_s"],
            "prompt_tok_s": d["prompt_tok_s"], "reps": d["reps"], "profile": profile}  # fmt: skip


def _scaled(terms: dict[str, float], factors: dict[str, float], names: tuple[str, ...]) -> float:
    return 1.0 / sum(terms[n] * factors.get(n, 1.0) for n in names)


def _errors(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    errs = [abs(r[key]) for r in rows]
    return {"median_abs_error": round(statistics.median(errs), 4), "worst_abs_error": round(max(errs), 4)}


def _over_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's rounds as one run: the medians over rounds of each round's median, the profile of
    the first round with those medians as its measurement."""
    gen = [r["gen_tok_s"]["median"] for r in runs]
    prompt = [r["prompt_tok_s"]["median"] for r in runs]

    def spread(v: list[float]) -> dict[str, Any]:
        return {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}

    profile = runs[0]["profile"]
    measured = replace(
        profile.measured, gen_tok_s=statistics.median(gen), prompt_tok_s=statistics.median(prompt)
    )
    return {"model": runs[0]["model"], "others_cpu_share": [x for r in runs for x in r["others_cpu_share"]],
            "gen_tok_s": spread(gen), "prompt_tok_s": spread(prompt), "reps": [r["reps"] for r in runs],
            "profile": replace(profile, measured=measured)}  # fmt: skip


def condition(threads: int, rounds: int) -> dict[str, Any]:
    from app.core.advice.speed import GEN_TERMS, PROMPT_TERMS
    from app.core.advice.speed_calibration import calibrate

    files = [models.smollm2_path(), models.gemma3_path(), *(case_file(c, q) for c, q in OTHERS)]
    runs: dict[Path, list[dict[str, Any]]] = {f: [] for f in files}
    for r in range(rounds):
        for f in files[r % len(files) :] + files[: r % len(files)]:
            runs[f].append(_bench(f, threads))
            print(f"{threads}t round {r + 1}/{rounds} {f.name}: pp {runs[f][-1]['prompt_tok_s']['median']:.0f}, "
                  f"tg {runs[f][-1]['gen_tok_s']['median']:.1f}", file=sys.stderr)  # fmt: skip
    merged = [_over_rounds(runs[f]) for f in files]
    calib, others = merged[:2], merged[2:]
    cal = calibrate([c["profile"] for c in calib])
    assert cal is not None
    factors = dict(cal.factors)
    rows = []
    for run in others:
        pred = run.pop("profile").predicted
        terms = pred.terms()
        row: dict[str, Any] = dict(run)
        for which, names, measured in (("gen", GEN_TERMS, run["gen_tok_s"]["median"]),
                                       ("prompt", PROMPT_TERMS, run["prompt_tok_s"]["median"])):  # fmt: skip
            before = pred.tok_s if which == "gen" else pred.prompt_tok_s
            after = _scaled(terms, factors, names)
            row[f"{which}_predicted_before"] = round(before, 2)
            row[f"{which}_predicted_after"] = round(after, 2)
            row[f"{which}_error_before"] = round(before / measured - 1, 4)
            row[f"{which}_error_after"] = round(after / measured - 1, 4)
        rows.append(row)
        print(f"{threads}t {run['model']}: gen {row['gen_error_before']:+.0%} → {row['gen_error_after']:+.0%}, "
              f"prompt {row['prompt_error_before']:+.0%} → {row['prompt_error_after']:+.0%}", file=sys.stderr)  # fmt: skip
    for c in calib:  # how far the speed model was from the two small models themselves
        pred = c["profile"].predicted
        c["gen_error_before"] = round(pred.tok_s / c["gen_tok_s"]["median"] - 1, 4)
        c["prompt_error_before"] = round(pred.prompt_tok_s / c["prompt_tok_s"]["median"] - 1, 4)
    return {
        "threads": threads,
        "rounds": rounds,
        "calibrated_by": [{k: v for k, v in c.items() if k != "profile"} for c in calib],
        "factors": {k: round(v, 4) for k, v in factors.items()},
        "models": rows,
        "summary": {
            f"{which}_{when}": _errors(rows, f"{which}_error_{when}")
            for which in ("gen", "prompt")
            for when in ("before", "after")
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"store the result as {OUT.relative_to(ROOT)}")
    ap.add_argument("--threads", default="", help="comma-separated thread counts (default: cores, then 1)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all the models, the order rotating")
    args = ap.parse_args()
    from app.core.advice.profiles import llama_cpp_version
    from app.core.machine.hardware import detect_machine

    os.environ["TAILORLM_HOME"] = tempfile.mkdtemp(prefix="tailorlm-calibration-")  # a store of our own
    Others().wait_for_quiet()
    machine = detect_machine(measure_bandwidth=True)  # as the app's first run measures and keeps it
    cores = machine.cpu.physical_cores
    counts = [int(t) for t in args.threads.split(",") if t] or list(dict.fromkeys((cores, 1)))
    t0 = time.perf_counter()
    conditions = [condition(t, args.rounds) for t in counts]
    report = {
        "benchmark": "speed_calibration",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "how": "bench_plan (pp512, then tg128 after it; up to 3 repetitions in 30 s), context 1024, flash attention",
        "error": "predicted / measured - 1; before: the speed model with the RAM bandwidth measured at the start; "
                 "after: calibrated by SmolLM2-135M and Gemma-3-270M's runs",
        "machine": {"cpu_model": machine.cpu.model, "physical_cores": cores, "cpu_isa": list(machine.cpu.isa),
                    "os": platform.platform(), "ram_total_bytes": machine.ram_total_bytes,
                    "ram_bandwidth_bytes_s": machine.ram_bandwidth_bytes_s,
                    "ram_bandwidth_measured": machine.ram_bandwidth_measured, "llama_cpp": llama_cpp_version()},
        "conditions": conditions,
        "wall_s": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    return emit(report, OUT, write=args.write)


if __name__ == "__main__":
    raise SystemExit(main())

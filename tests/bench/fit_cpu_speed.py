"""Fit: the CPU constants of the speed model (``app/core/advice/speed_cpu.py``) to this machine's
llama-bench records (``tests/bench/results/speed_records.json``, written by ``speed_records.py``:
every model at 1 and at 2 threads).

A generated token's seconds are Σ column × cost over the columns ``speed_cpu.cpu_generation_columns``
counts (bytes over the bandwidth or over the threads, weights and rows by type family over the
threads, layers), and a prompt token's are Σ column × cost over ``speed_cpu.cpu_prompt_columns``
(FLOPs by kernel family, layers, recurrent state) divided by threads × ISA × (for one thread)
``CPU_SOLO_SPEEDUP``. Both are linear in the costs, so each is fitted by non-negative least squares
on the relative error, every record weighing the same. Which bytes column a record uses (bandwidth
or threads) depends on the costs, so the generation fit is repeated until that choice stands; the
solo speed-up is the value on a grid that leaves the least error. A cost no record's column holds
keeps speed_cpu.py's value. The MoE layers' extra (``CPU_MOE_LAYER_S``, fitted on the GPU host) is
counted as fixed seconds. Prints JSON: the costs as fitted and as in speed.py, and each record's
error with each; speed_cpu.py's values are set by hand from it.

    python tests/bench/fit_cpu_speed.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice import speed, speed_cpu  # noqa: E402
from app.core.advice.estimate import tensors_for  # noqa: E402
from app.core.advice.recommend import best_plan  # noqa: E402
from tests.bench.speed_model_check import Run, cpu_record_runs  # noqa: E402

SOLO_GRID = [1.0 + i / 100 for i in range(51)]  # CPU_SOLO_SPEEDUP candidates


def nnls(a: Any, b: Any, iterations: int = 200) -> Any:
    """min ‖a·x − b‖ with x ≥ 0 (Lawson and Hanson's active set)."""
    import numpy as np

    n = a.shape[1]
    x, passive = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(iterations):
        w = a.T @ (b - a @ x)
        if passive.all() or w[~passive].max(initial=0.0) <= 1e-12:
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


@contextmanager
def costs(gen: dict[str, float], solo: float) -> Iterator[None]:
    """speed_cpu.py's costs replaced for the duration."""
    saved = dict(speed_cpu.CPU_GEN_COSTS), speed_cpu.CPU_SOLO_SPEEDUP
    speed_cpu.CPU_GEN_COSTS.update(gen)
    speed_cpu.CPU_SOLO_SPEEDUP = solo
    try:
        yield
    finally:
        speed_cpu.CPU_GEN_COSTS.clear()
        speed_cpu.CPU_GEN_COSTS.update(saved[0])
        speed_cpu.CPU_SOLO_SPEEDUP = saved[1]


def _work(run: Run) -> speed.DeviceWork:
    plan = best_plan(run.model, run.quant, run.n_ctx, run.budget, n_gpu_layers=0)
    return speed.device_work(run.model, tensors_for(run.model, run.quant), plan.estimate, run.depth_tokens)[
        "CPU"
    ]


def gen_columns(run: Run, w: speed.DeviceWork) -> tuple[dict[str, float], float]:
    """A record's generation columns, and the seconds not fitted here."""
    cols = speed_cpu.cpu_generation_columns(w, run.model, run.budget.ram_bandwidth_bytes_s, run.threads)
    return cols, w.moe_layers * speed.CPU_MOE_LAYER_S


def prompt_columns(run: Run, w: speed.DeviceWork, solo: float) -> dict[str, float]:
    with costs(speed_cpu.CPU_GEN_COSTS, solo):  # cpu_scale reads CPU_SOLO_SPEEDUP
        scale = speed_cpu.cpu_scale(run.threads, run.budget.cpu_isa)
    return {k: v / scale for k, v in speed_cpu.cpu_prompt_columns(w, run.model).items()}


def solve(rows: list[tuple[dict[str, float], float, float]], keep: dict[str, float]) -> dict[str, float]:
    """Costs for rows of (columns, fixed seconds, measured tok/s); relative error, non-negative."""
    import numpy as np

    names = sorted({k for cols, _, _ in rows for k, v in cols.items() if v})
    a = np.array([[cols.get(n, 0.0) * rate for n in names] for cols, _, rate in rows])
    b = np.array([1.0 - fixed * rate for _, fixed, rate in rows])
    return {**keep, **dict(zip(names, (float(v) for v in nnls(a, b)), strict=True))}


def errors(rows: list[tuple[dict[str, float], float, float]], cost: dict[str, float]) -> list[float]:
    return [
        1 / ((sum(v * cost.get(k, 0.0) for k, v in c.items()) + fixed) * rate) - 1 for c, fixed, rate in rows
    ]


def fit_generation(runs: list[tuple[Run, speed.DeviceWork]]) -> dict[str, float]:
    cost = dict(speed_cpu.CPU_GEN_COSTS)
    for _ in range(10):  # until every record's bytes column stands
        with costs(cost, speed_cpu.CPU_SOLO_SPEEDUP):
            rows = [(*gen_columns(r, w), r.gen_tok_s) for r, w in runs if r.gen_tok_s]
        new = solve(rows, dict(speed_cpu.CPU_GEN_COSTS))
        if new == cost:
            break
        cost = new
    return cost


def fit_prompt(runs: list[tuple[Run, speed.DeviceWork]]) -> tuple[dict[str, float], float]:
    import statistics

    best: tuple[float, dict[str, float], float] | None = None
    for solo in SOLO_GRID:
        rows = [(prompt_columns(r, w, solo), 0.0, r.prompt_tok_s) for r, w in runs if r.prompt_tok_s]
        cost = solve(rows, dict(speed_cpu.CPU_PROMPT_COSTS))
        err = statistics.fmean(e * e for e in errors(rows, cost))
        if best is None or err < best[0]:
            best = (err, cost, solo)
    assert best is not None
    return best[1], best[2]


def _readable(cost: dict[str, float]) -> dict[str, float]:
    out = {}
    for k, v in cost.items():
        if k.startswith("flop:"):
            out[f"{k} GFLOP/s per core"] = round(1 / v / 1e9, 1) if v else float("inf")
        elif k == "byte/bandwidth":
            out["CPU_READ_EFFICIENCY"] = round(1 / v, 3) if v else float("inf")
        elif k == "byte/core":
            out["CPU_CORE_BANDWIDTH GB/s"] = round(1 / v / 1e9, 1) if v else float("inf")
        else:
            out[f"{k} (ns)"] = round(v * 1e9, 4)
    return out


def main() -> int:
    runs = [(r, _work(r)) for r in cpu_record_runs()]
    gen = fit_generation(runs)
    prompt, solo = fit_prompt(runs)
    per_run: list[dict[str, Any]] = []
    for r, w in runs:
        row: dict[str, Any] = {"run": r.name}
        for which, g, p, s in (("fitted", gen, prompt, solo),
                               ("speed_cpu.py", speed_cpu.CPU_GEN_COSTS, speed_cpu.CPU_PROMPT_COSTS, speed_cpu.CPU_SOLO_SPEEDUP)):  # fmt: skip
            with costs(dict(g), s):
                cols, fixed = gen_columns(r, w)
            if r.gen_tok_s:
                row[f"generation {which}"] = round(errors([(cols, fixed, r.gen_tok_s)], g)[0], 4)
            if r.prompt_tok_s:
                row[f"prompt {which}"] = round(
                    errors([(prompt_columns(r, w, s), 0.0, r.prompt_tok_s)], p)[0], 4
                )
        per_run.append(row)
    print(json.dumps({
        "records": "tests/bench/results/speed_records.json",
        "fitted": {"generation": _readable(gen), "prompt": _readable(prompt), "CPU_SOLO_SPEEDUP": solo},
        "speed_cpu.py": {"generation": _readable(speed_cpu.CPU_GEN_COSTS), "prompt": _readable(speed_cpu.CPU_PROMPT_COSTS),
                     "CPU_SOLO_SPEEDUP": speed_cpu.CPU_SOLO_SPEEDUP},
        "raw": {"CPU_GEN_COSTS": gen, "CPU_PROMPT_COSTS": prompt},
        "errors (predicted ÷ measured − 1)": per_run,
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

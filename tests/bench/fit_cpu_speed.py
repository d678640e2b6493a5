"""Fit: the CPU constants of the speed model (``app/core/advice/speed.py``) to this machine's
llama-bench records (``tests/bench/results/speed_records.json``, written by ``speed_records.py``).

A generated token's seconds are linear in the inverses of the constants — Σ over type families of
bytes ÷ (bandwidth × efficiency) plus layers × CPU_LAYER_S — and so are a prompt token's — Σ over
kernel families of FLOPs ÷ (threads × per-core FLOP/s) plus layers × CPU_PROMPT_LAYER_CORE_S ÷
threads. Each is fitted by linear least squares on the relative error, every record weighing the
same, from the work the speed model itself counts (``speed.device_work`` on the planner's
placement). A family no record uses keeps its value. Prints JSON: the constants as fitted and as in
speed.py, and each record's error with each; speed.py's values are set by hand from it.

    python tests/bench/fit_cpu_speed.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice import speed  # noqa: E402
from app.core.advice.estimate import tensors_for  # noqa: E402
from app.core.advice.recommend import best_plan  # noqa: E402
from tests.bench.speed_model_check import cpu_record_runs  # noqa: E402


def _columns(run: Any) -> tuple[dict[str, float], dict[str, float]]:
    """Per record: the coefficient of each inverse constant in a generated token's seconds and in a
    prompt token's; ``"fixed"``: the seconds of constants not fitted here (an MoE layer's extra)."""
    plan = best_plan(run.model, run.quant, run.n_ctx, run.budget, n_gpu_layers=0)
    work = speed.device_work(run.model, tensors_for(run.model, run.quant), plan.estimate, run.depth_tokens)
    w = work["CPU"]
    bw = run.budget.ram_bandwidth_bytes_s
    gen = {f"1/eff[{f}]": n / bw for f, n in w.read_bytes.items()}
    gen["CPU_LAYER_S"] = w.layers - w.recurrent_layers
    gen["CPU_RECURRENT_LAYER_S"] = w.recurrent_layers
    gen["fixed"] = w.moe_layers * speed.CPU_MOE_LAYER_S
    scale = run.threads * speed.cpu_isa_factor(run.budget.cpu_isa)
    prompt = {f"1/flops[{f}]": n / scale for f, n in w.flops.items()}
    prompt["CPU_PROMPT_LAYER_CORE_S"] = (w.layers - w.recurrent_layers) / scale
    prompt["CPU_PROMPT_RECURRENT_LAYER_CORE_S"] = w.recurrent_layers / scale
    return gen, prompt


def _solve(rows: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    import numpy as np

    names = sorted({k for cols, _ in rows for k in cols} - {"fixed"})
    a = np.array([[cols.get(n, 0.0) * rate for n in names] for cols, rate in rows])  # seconds × tok/s
    b = np.array([1.0 - cols.get("fixed", 0.0) * rate for cols, rate in rows])
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    return dict(zip(names, (float(v) for v in x), strict=True))


def _current() -> tuple[dict[str, float], dict[str, float]]:
    gen = {f"1/eff[{f}]": 1 / e for f, e in speed.CPU_BANDWIDTH_EFFICIENCY.items()}
    gen["CPU_LAYER_S"] = speed.CPU_LAYER_S
    gen["CPU_RECURRENT_LAYER_S"] = speed.CPU_RECURRENT_LAYER_S
    prompt = {f"1/flops[{f}]": 1 / v for f, v in speed.CPU_CORE_FLOPS.items()}
    prompt["CPU_PROMPT_LAYER_CORE_S"] = speed.CPU_PROMPT_LAYER_CORE_S
    prompt["CPU_PROMPT_RECURRENT_LAYER_CORE_S"] = speed.CPU_PROMPT_RECURRENT_LAYER_CORE_S
    return gen, prompt


def _readable(x: dict[str, float]) -> dict[str, float]:
    out = {}
    for k, v in x.items():
        if k.startswith("1/eff["):
            out[f"CPU_BANDWIDTH_EFFICIENCY[{k[6:-1]}]"] = round(1 / v, 3)
        elif k.startswith("1/flops["):
            out[f"CPU_CORE_FLOPS[{k[8:-1]}]"] = round(1 / v / 1e9, 1)  # GFLOP/s per core
        else:
            out[k] = v
    return out


def main() -> int:
    runs = cpu_record_runs()
    cols = [(_columns(r), r) for r in runs]
    gen_rows = [(g, r.gen_tok_s) for (g, _), r in cols if r.gen_tok_s]
    prompt_rows = [(p, r.prompt_tok_s) for (_, p), r in cols if r.prompt_tok_s]
    fitted = {"generation": _solve(gen_rows), "prompt": _solve(prompt_rows)}
    cur_gen, cur_prompt = _current()
    current = {"generation": cur_gen, "prompt": cur_prompt}
    errors = []
    for (g, p), r in cols:
        row: dict[str, Any] = {"run": r.name}
        for what, c, measured in (("generation", g, r.gen_tok_s), ("prompt", p, r.prompt_tok_s)):
            for which, x in (("fitted", fitted[what]), ("speed.py", current[what])):
                s = sum(v * x.get(k, 1.0) for k, v in c.items())  # "fixed" is seconds already: × 1
                row[f"{what} {which}"] = round(1 / s / measured - 1, 4)
        errors.append(row)
    print(json.dumps({
        "records": str(Path("tests/bench/results/speed_records.json")),
        "fitted": {k: _readable(v) for k, v in fitted.items()},
        "speed.py": {k: _readable(v) for k, v in current.items()},
        "errors (predicted ÷ measured − 1)": errors,
    }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

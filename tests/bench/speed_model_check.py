"""Check: the speed model (``app/core/advice/speed.py``) against every run the repo has recorded.

No llama.cpp runs here: for each recorded run — the machine, the file, the settings and the
measured tok/s kept in ``tests/bench/results`` and ``tests/gpu/results`` — today's planner
(``recommend.best_plan`` with the run's GPU layers) predicts generation and prompt speed, and the
prediction is compared with what was measured. Prints JSON: every run (predicted, measured,
predicted ÷ measured) and, for generation and for prompt processing, CPU and GPU apart, the median
and worst error. ``--write`` also stores it as ``tests/bench/results/speed_model_check.json``,
which the README's speed-model table is generated from.

Runs come in two kinds: ``benchmark`` (≥ 128 generated tokens after a 512-token prompt, repeated:
``engine_speed.json`` and the H100 proofs' ``speed``) and ``first tokens`` (8 tokens decoded in a
fresh process right after the load: ``estimate_accuracy.json`` and the H100 proofs' ``loads``,
measured for memory, not speed; their tok/s include warm-up and are reported apart).

    python tests/bench/speed_model_check.py [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice import speed  # noqa: E402
from app.core.advice.recommend import Budget, GpuBudget, best_plan  # noqa: E402
from app.core.machine.bandwidth import DEFAULT_RAM_BANDWIDTH_BYTES_S  # noqa: E402
from app.core.model.info import ModelInfo  # noqa: E402

BENCH = ROOT / "tests" / "bench" / "results"
GPU = ROOT / "tests" / "gpu" / "results"
OUT = BENCH / "speed_model_check.json"
GPU_RESULTS = ("h100.json", "h100-before-fix.json")
# The CPU runs (2026-11-23, a 2-core VM) recorded no RAM bandwidth: the app's own fallback for a
# machine it could not measure stands in, and every such run says so.
ASSUMED_CPU_BANDWIDTH_BYTES_S = DEFAULT_RAM_BANDWIDTH_BYTES_S
ASSUMED_NOTE = (
    f"RAM bandwidth not recorded: the app's fallback, {ASSUMED_CPU_BANDWIDTH_BYTES_S / 1e9:.0f} GB/s"
)
BIG = 1 << 50  # memory is not what is checked: every recorded run loaded


@dataclass(frozen=True)
class Run:
    source: str  # the results file, relative to the repo
    name: str
    kind: str  # "benchmark" | "first tokens"
    model: ModelInfo
    quant: str
    n_ctx: int
    n_gpu_layers: int
    budget: Budget
    gen_tok_s: float | None
    prompt_tok_s: float | None
    notes: tuple[str, ...] = ()
    reference: dict[str, Any] = field(default_factory=dict)


def _cpu_budget(isa: tuple[str, ...]) -> Budget:
    return Budget(ram_bytes=BIG, ram_bandwidth_bytes_s=ASSUMED_CPU_BANDWIDTH_BYTES_S, can_offload=False,
                  cpu_isa=isa)  # fmt: skip


def _gpu_budget(hw: dict[str, Any]) -> Budget:
    gpus = tuple(
        GpuBudget(g["name"], BIG, float(g["bandwidth_bytes_s"]), backend=g["backend"]) for g in hw["gpus"]
    )
    return Budget(ram_bytes=BIG, ram_bandwidth_bytes_s=float(hw["ram_bandwidth_bytes_s"]), gpus=gpus,
                  can_offload=True, cpu_isa=tuple(hw["cpu"]["isa"]))  # fmt: skip


def _real_model(name: str) -> ModelInfo:
    from app.core.model.source import model_from_gguf
    from tests import models

    path = models.smollm2_path() if name == models.smollm2_path().name else models.gemma3_path()
    if path.name != name:
        raise ValueError(f"no test model named {name}")
    return model_from_gguf(path)


def _synthetic_model(name: str) -> tuple[ModelInfo, str]:
    """``llama-3.2-1b-instruct-Q8_0.gguf`` → the catalog model and the quant it was made with."""
    from app.core.model.catalog import find_entry
    from app.core.model.source import model_from_catalog

    catalog_id, _, quant = name.removesuffix(".gguf").rpartition("-")
    return model_from_catalog(find_entry(catalog_id)), quant


def cpu_benchmark_runs() -> list[Run]:
    j = json.loads((BENCH / "engine_speed.json").read_text())
    n_ctx = j["n_prompt"] + j["n_gen"] + 64  # as engine_speed.py loads the model
    runs = []
    for r in j["results"]:
        model = _real_model(r["model"])
        runs.append(Run(
            "tests/bench/results/engine_speed.json", r["model"], "benchmark", model, str(model.file_type), n_ctx, 0,
            _cpu_budget(()), r["engine"]["gen_tok_s"], r["engine"]["prompt_tok_s"],
            notes=(ASSUMED_NOTE, f"{j['threads']} threads"),
            reference={"llama_bench_gen_tok_s": r["llama_bench"]["gen_tok_s"],
                       "llama_bench_prompt_tok_s": r["llama_bench"]["prompt_tok_s"]},
        ))  # fmt: skip
    return runs


def cpu_first_token_runs() -> list[Run]:
    j = json.loads((BENCH / "estimate_accuracy.json").read_text())
    isa = tuple(j["machine"]["cpu_isa"])
    runs = []
    for r in j["results"]:
        if "error" in r and "measured_bytes" not in r:
            continue  # a failed case measured nothing
        try:
            model, quant = _real_model(r["model"]), r["quant"]
        except ValueError:
            model, quant = _synthetic_model(r["model"])
        runs.append(Run(
            "tests/bench/results/estimate_accuracy.json", f"{r['model']} ctx {r['n_ctx']}", "first tokens", model,
            quant, r["n_ctx"], 0, _cpu_budget(isa), r.get("decode_tok_s"), r.get("prompt_tok_s"),
            notes=(ASSUMED_NOTE, "2 threads", "8 decoded tokens in a fresh process"),
            reference={"recorded_weights_bytes": r["predicted"]["weights"]},
        ))  # fmt: skip
    return runs


def gpu_runs() -> list[Run]:
    from tests.gpu.gpu_proof import model_from_summary

    runs = []
    for fname in GPU_RESULTS:
        j = json.loads((GPU / fname).read_text())
        budget, src = _gpu_budget(j["hw"]), f"tests/gpu/results/{fname}"
        models = {name: model_from_summary(name, s) for name, s in j["models"].items()}
        for s in j.get("speed", []):
            m = models[s["model"]]
            runs.append(Run(
                src, f"{s['model']} ctx {s['n_ctx']} ngl {s['n_gpu_layers']}", "benchmark", m, str(m.file_type),
                s["n_ctx"], s["n_gpu_layers"], budget, s["engine"]["gen_tok_s"], None,
                notes=(f"{s['threads']} threads", f"{s['engine']['n_gen']} tokens at depth {s['engine']['depth']}"),
                reference={"engine_gen_tok_s_runs": s["engine"]["gen_tok_s_runs"],
                           "llama_bench_gen_tok_s": s["llama_bench"]["gen_tok_s"]},
            ))  # fmt: skip
        for ld in j["loads"].values():
            if not ld.get("ok") or not ld.get("gen_tok_s"):
                continue
            m = models[ld["model"]]
            runs.append(Run(
                src, f"{ld['model']} ctx {ld['n_ctx']} ngl {ld['n_gpu_layers']}", "first tokens", m,
                str(m.file_type), ld["n_ctx"], ld["n_gpu_layers"], budget, ld["gen_tok_s"], None,
                notes=(f"{ld['n_threads']} threads", f"{ld['n_gen_tokens']} decoded tokens after the load"),
            ))  # fmt: skip
    return runs


def _pair(predicted: float, measured: float | None) -> dict[str, float] | None:
    if not measured:
        return None
    return {
        "predicted": round(predicted, 2),
        "measured": round(measured, 2),
        "ratio": round(predicted / measured, 4),
    }


def check(run: Run) -> dict[str, Any]:
    plan = best_plan(run.model, run.quant, run.n_ctx, run.budget, n_gpu_layers=run.n_gpu_layers)
    cpu_weights = plan.estimate.device("CPU").weights_bytes
    row: dict[str, Any] = {
        "source": run.source, "run": run.name, "kind": run.kind,
        "device": "GPU" if plan.n_gpu_layers else "CPU", "placement": plan.fits, "n_ctx": run.n_ctx,
        "n_gpu_layers": plan.n_gpu_layers, "bound": plan.speed.bound,
        "bytes_per_token": plan.speed.bytes_per_token,
        "generation": _pair(plan.speed.tok_s, run.gen_tok_s),
        "prompt": _pair(plan.speed.prompt_tok_s, run.prompt_tok_s),
        "notes": list(run.notes),
    }  # fmt: skip
    ref = dict(run.reference)
    recorded = ref.pop("recorded_weights_bytes", None)
    if recorded is not None:  # the file rebuilt from the catalog must be the file that ran
        row["same_weights_as_run"] = recorded == cpu_weights
    row.update(ref)
    return row


def _stats(rows: list[dict[str, Any]], what: str) -> dict[str, Any] | None:
    sel = [r for r in rows if r[what]]
    if not sel:
        return None
    ratios = [r[what]["ratio"] for r in sel]
    worst = max(sel, key=lambda r: abs(r[what]["ratio"] - 1))
    dec = statistics.quantiles(ratios, n=10, method="inclusive") if len(ratios) > 1 else ratios * 9
    return {
        "n": len(sel),
        "median_abs_error": round(statistics.median(abs(x - 1) for x in ratios), 4),
        "worst_abs_error": round(abs(worst[what]["ratio"] - 1), 4),
        "worst_run": worst["run"],
        "worst_source": Path(worst["source"]).name,
        "median_ratio": round(statistics.median(ratios), 4),
        "p10_ratio": round(dec[0], 4),
        "p90_ratio": round(dec[-1], 4),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for what in ("generation", "prompt"):
        out[what] = {
            dev: {kind: _stats([r for r in rows if r["device"] == dev and r["kind"] == kind], what)
                  for kind in ("benchmark", "first tokens")}
            for dev in ("CPU", "GPU")
        }  # fmt: skip
    return out


def build() -> dict[str, Any]:
    rows = [check(r) for r in (*cpu_benchmark_runs(), *gpu_runs(), *cpu_first_token_runs())]
    return {
        "benchmark": "speed_model_check",
        "error": "predicted / measured - 1 (positive = the model promised more than was measured)",
        "speed_model": {k: getattr(speed, k) for k in dir(speed) if k.isupper()},
        "summary": summary(rows),
        "runs": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"store the result as {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    text = json.dumps(build(), indent=1, ensure_ascii=False) + "\n"
    if args.write:
        OUT.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

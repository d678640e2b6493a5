"""Check: the speed model (``app/core/advice/speed.py``) against every run the repo has recorded.

No llama.cpp runs here: for each recorded run — the machine, the file, the settings and the
measured tok/s kept in ``tests/bench/results`` and ``tests/gpu/results`` — today's planner
(``recommend.best_plan`` with the run's GPU layers) places the layers, ``speed.predict_speed``
predicts generation and prompt speed, and the prediction is compared with what was measured. Prints JSON: every run (predicted, measured,
predicted ÷ measured) and, for generation and for prompt processing, CPU and GPU apart, the median
and worst error. ``--write`` also stores it as ``tests/bench/results/speed_model_check.json``,
which the README's speed-model table is generated from.

Runs come in two kinds: ``benchmark`` (≥ 128 generated tokens after a 512-token prompt, repeated:
``engine_speed.json``, ``speed_records.json`` and the GPU proofs' ``speed``) and ``first tokens`` (8
tokens decoded in a fresh process right after the load: ``estimate_accuracy.json`` and the GPU
proofs' ``loads``, measured for memory, not speed; their tok/s include warm-up and are reported
apart). Each run is predicted with what its record knows: the RAM bandwidth (the app's fallback
where none was recorded, and the run says so), the threads, the GPU's name and bandwidth, and the
depth of the context while generating.

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

from app.core.advice import speed, speed_cpu  # noqa: E402
from app.core.advice.estimate import tensors_for  # noqa: E402
from app.core.advice.recommend import Budget, GpuBudget, Plan, best_plan  # noqa: E402
from app.core.machine.bandwidth import DEFAULT_RAM_BANDWIDTH_BYTES_S  # noqa: E402
from app.core.model.info import ModelInfo  # noqa: E402
from tests.bench.report import emit  # noqa: E402

BENCH = ROOT / "tests" / "bench" / "results"
GPU = ROOT / "tests" / "gpu" / "results"
OUT = BENCH / "speed_model_check.json"
# The GPU proofs; a file not (yet) in the checkout is skipped.
GPU_RESULTS = ("h100.json", "h100-before-fix.json", "h200-speed.json")
# The memory benchmark's runs recorded no RAM bandwidth: the app's own fallback for a machine it could
# not measure stands in, and each such run says so.
ASSUMED_CPU_BANDWIDTH_BYTES_S = DEFAULT_RAM_BANDWIDTH_BYTES_S
ASSUMED_NOTE = (
    f"RAM bandwidth not recorded: the app's fallback, {ASSUMED_CPU_BANDWIDTH_BYTES_S / 1e9:.0f} GB/s"
)
BIG = 1 << 50  # memory is not what is checked: every recorded run loaded
# The constants of speed.py that were fitted to records, with how many numbers each holds, and the
# results files each speed was fitted to (GPU: only runs with every layer on the GPU). The other
# runs — the engine on the CPU, partial offload — are held out: checks the fit never saw.
FITTED = {"GPU_BANDWIDTH_EFFICIENCY": 2, "GPU_LAYER_S": 1, "GPU_TOKEN_S": 1,
          "CPU_GEN_COSTS": len(speed_cpu.CPU_GEN_COSTS), "CPU_PROMPT_COSTS": len(speed_cpu.CPU_PROMPT_COSTS),
          "CPU_SOLO_SPEEDUP": 1, "GPU_PROMPT_EFFICIENCY": 1, "GPU_PROMPT_LAYER_S": 1}  # fmt: skip
FITTED_TO = {"generation": ("speed_records.json", "h100.json", "h100-before-fix.json", "h200-speed.json"),
             "prompt": ("speed_records.json", "h200-speed.json")}  # fmt: skip


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
    threads: int
    depth_tokens: int  # in the context while generating: the prompt and half the generated tokens
    notes: tuple[str, ...] = ()
    reference: dict[str, Any] = field(default_factory=dict)


def _cpu_budget(isa: tuple[str, ...], bandwidth_bytes_s: float = ASSUMED_CPU_BANDWIDTH_BYTES_S) -> Budget:
    return Budget(ram_bytes=BIG, ram_bandwidth_bytes_s=bandwidth_bytes_s, can_offload=False, cpu_isa=isa)


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
    """The engine on this repo's CPU machine (``engine_speed.json``): what the app itself reaches."""
    j = json.loads((BENCH / "engine_speed.json").read_text())
    n_ctx = j["n_prompt"] + j["n_gen"] + 64  # as engine_speed.py loads the model
    budget = _cpu_budget(tuple(j["machine"]["isa"]), float(j["machine"]["ram_bandwidth_bytes_s"]))
    runs = []
    for r in j["results"]:
        model = _real_model(r["model"])
        runs.append(Run(
            "tests/bench/results/engine_speed.json", r["model"], "benchmark", model, str(model.file_type), n_ctx, 0,
            budget, r["engine"]["gen_tok_s"], r["engine"]["prompt_tok_s"], j["threads"],
            j["n_prompt"] + j["n_gen"] // 2, notes=(f"{j['threads']} threads", "the engine, greedy"),
            reference={"llama_bench_gen_tok_s": r["llama_bench"]["gen_tok_s"],
                       "llama_bench_prompt_tok_s": r["llama_bench"]["prompt_tok_s"]},
        ))  # fmt: skip
    return runs


def cpu_record_runs() -> list[Run]:
    """llama-bench on this repo's CPU machine (``tests/bench/speed_records.py``), with its bandwidth."""
    path = BENCH / "speed_records.json"
    if not path.exists():
        return []
    from tests.gpu.gpu_proof import model_from_summary

    j = json.loads(path.read_text())
    mach = j["machine"]
    budget = _cpu_budget(tuple(mach["cpu_isa"]), float(mach["ram_bandwidth_bytes_s"]))
    n_ctx = j["n_prompt"] + j["n_gen"] + j["depth"]  # llama-bench's n_ctx_needed
    runs = []
    for r in j["results"]:
        m = model_from_summary(r["model"], j["models"][r["model"]])
        threads = r.get("threads", mach["threads"])  # one count for all in records before 1 and 2 threads
        name = f"{r['model']}, {threads} thread{'s' if threads > 1 else ''}"
        runs.append(Run(
            "tests/bench/results/speed_records.json", name, "benchmark", m, str(m.file_type), n_ctx, 0, budget,
            r["gen_tok_s"]["median"], r["prompt_tok_s"]["median"], threads, j["depth"] + j["n_gen"] // 2,
            notes=(f"{threads} threads", "llama-bench tg128 at depth 512 and pp512",
                   *(["contended: other work took the cores"] if r["gen_tok_s"]["contended"] else [])),
            reference={"gen_tok_s_spread": [r["gen_tok_s"]["min"], r["gen_tok_s"]["max"]],
                       "prompt_tok_s_spread": [r["prompt_tok_s"]["min"], r["prompt_tok_s"]["max"]]},
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
            quant, r["n_ctx"], 0, _cpu_budget(isa), r.get("decode_tok_s"), r.get("prompt_tok_s"), 2,
            min(512, r["n_ctx"] - 16) + 4,  # as the estimate_accuracy.py run fills it
            notes=(ASSUMED_NOTE, "2 threads", "8 decoded tokens in a fresh process"),
            reference={"recorded_weights_bytes": r["predicted"]["weights"]},
        ))  # fmt: skip
    return runs


def gpu_runs() -> list[Run]:
    from tests.gpu.gpu_proof import model_from_summary

    runs = []
    for fname in GPU_RESULTS:
        if not (GPU / fname).exists():
            continue
        j = json.loads((GPU / fname).read_text())
        budget, src = _gpu_budget(j["hw"]), f"tests/gpu/results/{fname}"
        models = {name: model_from_summary(name, s) for name, s in j["models"].items()}
        for s in j.get("speed", []):
            if "engine" not in s or "llama_bench" not in s:
                continue  # a case that failed measured nothing
            m, eng = models[s["model"]], s["engine"]
            runs.append(Run(
                src, f"{s['model']} ctx {s['n_ctx']} ngl {s['n_gpu_layers']}", "benchmark", m, str(m.file_type),
                s["n_ctx"], s["n_gpu_layers"], budget, eng["gen_tok_s"], s["llama_bench"].get("prompt_tok_s"),
                s["threads"], eng["depth"] + eng["n_gen"] // 2,
                notes=(f"{s['threads']} threads", f"{eng['n_gen']} tokens at depth {eng['depth']}",
                       "prompt: llama-bench pp512"),
                reference={"engine_gen_tok_s_runs": eng["gen_tok_s_runs"],
                           "engine_prompt_tok_s": eng.get("prompt_tok_s"),
                           "llama_bench_gen_tok_s": s["llama_bench"]["gen_tok_s"]},
            ))  # fmt: skip
        for ld in j.get("loads", {}).values():
            if not ld.get("ok") or not ld.get("gen_tok_s"):
                continue
            m = models[ld["model"]]
            runs.append(Run(
                src, f"{ld['model']} ctx {ld['n_ctx']} ngl {ld['n_gpu_layers']}", "first tokens", m,
                str(m.file_type), ld["n_ctx"], ld["n_gpu_layers"], budget, ld["gen_tok_s"], None, ld["n_threads"],
                ld["n_prompt_tokens"] + ld["n_gen_tokens"] // 2,
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


def predict(run: Run) -> tuple[Plan, speed.SpeedEstimate]:
    """The planner's placement for the run's settings, and the speed model given what the record
    knows (threads, GPU names, depth), which the advisor's own call fills from the machine."""
    plan = best_plan(run.model, run.quant, run.n_ctx, run.budget, n_gpu_layers=run.n_gpu_layers)
    est = speed.predict_speed(
        run.model, tensors_for(run.model, run.quant), plan.estimate,
        cpu_bandwidth_bytes_s=run.budget.ram_bandwidth_bytes_s,
        gpu_bandwidth_bytes_s={f"GPU{i}": g.bandwidth_bytes_s for i, g in enumerate(run.budget.gpus)},
        gpu_names={f"GPU{i}": g.name for i, g in enumerate(run.budget.gpus)},
        cpu_threads=run.threads, depth_tokens=run.depth_tokens,
    )  # fmt: skip
    return plan, est


def check(run: Run) -> dict[str, Any]:
    plan, est = predict(run)
    cpu_weights = plan.estimate.device("CPU").weights_bytes
    row: dict[str, Any] = {
        "source": run.source, "run": run.name, "kind": run.kind,
        "machine": run.budget.gpus[0].name if run.budget.gpus else "CPU machine",
        "device": "GPU" if plan.n_gpu_layers else "CPU", "placement": plan.fits, "n_ctx": run.n_ctx,
        "n_gpu_layers": plan.n_gpu_layers, "threads": run.threads, "depth_tokens": run.depth_tokens,
        "cpu_bandwidth_bytes_s": run.budget.ram_bandwidth_bytes_s,
        "bound": est.bound, "bytes_per_token": est.bytes_per_token,
        "generation": _pair(est.tok_s, run.gen_tok_s),
        "prompt": _pair(est.prompt_tok_s, run.prompt_tok_s),
        "notes": list(run.notes),
    }  # fmt: skip
    for what, files in FITTED_TO.items():
        row[f"fitted_{what}"] = (
            Path(run.source).name in files and run.kind == "benchmark" and (plan.fits != "partial")
        )
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


def fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many constants were fitted to how many measurements, and how many were held out."""
    used = {what: [r for r in rows if r[f"fitted_{what}"] and r[what]] for what in FITTED_TO}
    held = {what: [r for r in rows if r["kind"] == "benchmark" and r[what] and not r[f"fitted_{what}"]]
            for what in FITTED_TO}  # fmt: skip
    return {
        "constants": sum(FITTED.values()),
        "by_constant": FITTED,
        "records": sum(len(v) for v in used.values()),
        "configurations": len({(r["machine"], r["run"].split(" ctx ")[0]) for v in used.values() for r in v}),
        "fitted": {what: len(v) for what, v in used.items()},
        "held_out": {what: len(v) for what, v in held.items()},
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
    rows = [
        check(r) for r in (*cpu_benchmark_runs(), *cpu_record_runs(), *gpu_runs(), *cpu_first_token_runs())
    ]
    return {
        "benchmark": "speed_model_check",
        "error": "predicted / measured - 1 (positive = the model promised more than was measured)",
        "speed_model": {k: getattr(m, k) for m in (speed, speed_cpu) for k in dir(m) if k.isupper()},
        "fit": fit(rows),
        "summary": summary(rows),
        "runs": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"store the result as {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    return emit(build(), OUT, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: predicted vs measured memory of real llama.cpp runs on this machine (CPU).

For each case a fresh child process (``app.engine.memory_probe``) loads the model with
llama-cpp-python, evaluates a prompt of one full ubatch (512 tokens, so the compute buffer is
really used) and a few decode steps, and reports its peak resident set (VmHWM). The prediction
is ``app.core.advice.estimate`` for the same settings. Prints one JSON object: every case and the
median and worst relative error.

Cases: the two real test models, and synthetic models with the exact tensor shapes of real
architectures (random weights, a vocabulary of the real size) written by ``tests/synthetic.py``
and quantized with llama.cpp's own quantizer, at several quantization levels and contexts.

    python tests/bench/estimate_accuracy.py                  # everything but the 8B model
    python tests/bench/estimate_accuracy.py --with-8b        # adds Llama-3.1-8B shapes
    python tests/bench/estimate_accuracy.py --quick          # real models only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.estimate import RunSettings, estimate  # noqa: E402
from app.core.model.source import model_from_gguf  # noqa: E402
from tests import models  # noqa: E402

CACHE = ROOT / ".cache" / "bench-models"
SYNTHETIC = ["llama-3.2-1b-instruct", "qwen2.5-1.5b-instruct", "gemma-3-1b-it", "phi-3-mini-4k-instruct"]
QUANTS = ["Q8_0", "Q6_K", "Q4_K_M", "Q3_K_M"]
CONTEXTS = [512, 4096, 16384]


def _isa() -> tuple[str, ...]:
    from app.core.machine.hardware import detect_machine

    return tuple(detect_machine(measure_bandwidth=False).cpu.isa)


def synthetic_model(catalog_id: str, quant: str, n_layers: int | None = None) -> Path:
    """Write (once) the F16 model with real shapes — only its first ``n_layers`` layers if given —
    then quantize it with llama.cpp."""
    from app.core.model.catalog import find_entry
    from tests.synthetic import quantize_gguf, write_synthetic_gguf

    CACHE.mkdir(parents=True, exist_ok=True)
    stem = catalog_id if n_layers is None else f"{catalog_id}-{n_layers}L"
    f16 = CACHE / f"{stem}-F16.gguf"
    out = CACHE / f"{stem}-{quant}.gguf"
    if out.exists():
        return out
    if not f16.exists():
        write_synthetic_gguf(find_entry(catalog_id).config, f16, n_layers=n_layers)
    quantize_gguf(f16, out, quant)
    return out


def measure(path: Path, n_ctx: int, isa: tuple[str, ...]) -> dict[str, object]:
    n_prompt = min(512, n_ctx - 16)  # one full ubatch where the context allows
    n_decode = 8
    spec = {"model": str(path), "n_ctx": n_ctx, "flash_attn": "on", "prompt_tokens": n_prompt,
            "decode_tokens": n_decode, "n_threads": 2}  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "app.engine.memory_probe", json.dumps(spec)],
        capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        return {"model": path.name, "n_ctx": n_ctx, "error": (out.stdout + out.stderr)[-500:]}
    run = json.loads(out.stdout)
    model = model_from_gguf(path)
    settings = RunSettings(n_ctx=n_ctx, flash_attn=True, cpu_isa=isa)
    worst = estimate(model, None, settings)  # a full context: what the advisor plans with
    est = estimate(model, None, settings, filled_tokens=n_prompt + n_decode)  # this run's fill
    predicted = est.rss_bytes  # peak RSS includes reclaimable mapped pages
    measured = int(run["peak_rss_bytes"])
    cpu = est.device("CPU")
    return {
        "model": path.name,
        "quant": model.file_type,
        "n_ctx": n_ctx,
        "predicted_bytes": predicted,
        "measured_bytes": measured,
        "error": (predicted - measured) / measured,
        "predicted_full_context_bytes": worst.rss_bytes,
        "predicted": {
            "weights": cpu.weights_bytes,
            "repack": cpu.repack_bytes,
            "kv": cpu.kv_bytes,
            "compute": cpu.compute_bytes,
            "output": cpu.output_bytes,
            "runtime": cpu.runtime_bytes,
            "reclaimable": cpu.reclaimable_bytes,
            "fit_ram": est.ram_bytes,
        },
        "llama_cpp_buffers": {
            "model": run["model_buffers"],
            "kv": run["kv_buffers"],
            "compute": run["compute_buffers"],
            "output": run["output_buffers"],
        },
        "decode_tok_s": run.get("decode_tok_s"),
        "prompt_tok_s": run.get("prompt_tok_s"),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the two real models")
    ap.add_argument("--with-8b", action="store_true", help="add Llama-3.1-8B shapes (16 GB F16 on disk)")
    ap.add_argument("--models", nargs="*", help="catalog ids of synthetic models (default: a 1-4B set)")
    args = ap.parse_args()
    isa = _isa()
    cases: list[tuple[Path, int]] = [
        (p, c) for p in (models.smollm2_path(), models.gemma3_path()) for c in CONTEXTS
    ]
    if not args.quick:
        ids = list(args.models or SYNTHETIC) + (["llama-3.1-8b-instruct"] if args.with_8b else [])
        for cid in ids:
            for q in QUANTS:
                path = synthetic_model(cid, q)
                cases += [(path, c) for c in CONTEXTS]
    results = []
    for path, ctx in cases:
        r = measure(path, ctx, isa)
        results.append(r)
        print(json.dumps({k: r[k] for k in ("model", "n_ctx", "error")}), file=sys.stderr, flush=True)
    errors = [abs(float(r["error"])) for r in results if isinstance(r.get("error"), float)]
    summary = {
        "benchmark": "estimate_accuracy",
        "machine": {"cpu_isa": list(isa)},
        "cases": len(results),
        "failed": sum(1 for r in results if not isinstance(r.get("error"), float)),
        "median_abs_error": statistics.median(errors) if errors else None,
        "worst_abs_error": max(errors) if errors else None,
        "mean_signed_error": statistics.fmean(
            float(r["error"]) for r in results if isinstance(r.get("error"), float)
        )
        if errors
        else None,
        "results": results,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

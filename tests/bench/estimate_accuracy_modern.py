"""Benchmark: predicted vs measured peak RSS for the architectures people run now (issue 16), CPU.

The same measurement as ``tests/bench/estimate_accuracy.py`` (a fresh ``app.engine.memory_probe``
child per case: load, a 512-token prompt where the context allows, 8 decoded tokens, VmHWM against
``estimate`` for that fill), on synthetic models with real shapes written by ``tests/synthetic.py``
and quantized by llama.cpp:

- mixture of experts: Qwen3-30B-A3B (128 experts, 8 used), its first 4 of 48 layers with the real
  widths and vocabulary (the whole model is 61 GB as F16, beyond this machine's disk and RAM);
- hybrids, whole models: Qwen3.5-0.8B (Gated DeltaNet, 3 of 4 layers recurrent, a draft-head
  block), LFM2-350M (short convolutions), Granite-4.0-H-350M (Mamba-2);
- interleaved sliding-window attention: Gemma-3-1B is in ``estimate_accuracy.json`` already.

    python tests/bench/estimate_accuracy_modern.py [--write]   # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.estimate_accuracy import CACHE, _isa, measure  # noqa: E402
from tests.bench.report import emit  # noqa: E402

QUANTS = ["Q8_0", "Q4_K_M", "Q3_K_M"]
CONTEXTS = [512, 4096, 32768]
OUT = ROOT / "tests" / "bench" / "results" / "estimate_accuracy_modern.json"


def _configs() -> dict[str, tuple[str, dict[str, Any], int | None]]:
    """name → (kind, config, layers kept: None = all)."""
    from app.core.model.catalog import find_entry
    from tests.hybrid_models import GRANITE_4_H_350M, LFM2_350M, QWEN35_08B

    return {
        "qwen3-30b-a3b": ("mixture of experts (4 of 48 layers)", find_entry("qwen3-30b-a3b").config, 4),
        "qwen3.5-0.8b": ("hybrid: Gated DeltaNet", QWEN35_08B, None),
        "lfm2-350m": ("hybrid: short convolution", LFM2_350M, None),
        "granite-4.0-h-350m": ("hybrid: Mamba-2", GRANITE_4_H_350M, None),
    }


def model_file(name: str, config: dict[str, Any], n_layers: int | None, quant: str) -> Path:
    from tests.synthetic import quantize_gguf, write_synthetic_gguf

    CACHE.mkdir(parents=True, exist_ok=True)
    stem = name if n_layers is None else f"{name}-{n_layers}L"
    f16, out = CACHE / f"{stem}-F16.gguf", CACHE / f"{stem}-{quant}.gguf"
    if not out.exists():
        if not f16.exists():
            write_synthetic_gguf(config, f16.with_suffix(".part"), n_layers=n_layers)
            f16.with_suffix(".part").rename(f16)
        quantize_gguf(f16, out, quant)
    return out


def case_file(name: str, quant: str) -> Path:
    """A speed benchmark's file: the hybrids as this benchmark writes them (Qwen3.5-0.8B is not in the
    catalog; the same file names, so the benchmarks reuse each other's), the rest through the catalog."""
    from tests.bench.estimate_accuracy import synthetic_model

    hybrids = _configs()
    if name in hybrids and hybrids[name][2] is None:
        _, config, _ = hybrids[name]
        return model_file(name, config, None, quant)
    return synthetic_model(name, quant)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    ap.add_argument("--models", nargs="*", help="a subset of the names above")
    args = ap.parse_args()
    isa = _isa()
    results = []
    t0 = time.perf_counter()
    for name, (kind, config, n_layers) in _configs().items():
        if args.models and name not in args.models:
            continue
        for quant in QUANTS:
            path = model_file(name, config, n_layers, quant)
            for n_ctx in CONTEXTS:
                r = measure(path, n_ctx, isa)
                r["kind"] = kind
                results.append(r)
                print(
                    json.dumps({k: r.get(k) for k in ("model", "n_ctx", "error")}),
                    file=sys.stderr,
                    flush=True,
                )
    errors = [abs(float(r["error"])) for r in results if isinstance(r.get("error"), float)]
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(r["kind"] for r in results):
        errs = [
            abs(float(r["error"])) for r in results if r["kind"] == kind and isinstance(r.get("error"), float)
        ]
        by_kind[kind] = {
            "n": len(errs),
            "median_abs_error": statistics.median(errs),
            "worst_abs_error": max(errs),
        }
    summary = {
        "benchmark": "estimate_accuracy_modern",
        "machine": {"cpu_isa": list(isa)},
        "cases": len(results),
        "failed": sum(1 for r in results if not isinstance(r.get("error"), float)),
        "median_abs_error": statistics.median(errors) if errors else None,
        "worst_abs_error": max(errors) if errors else None,
        "by_kind": by_kind,
        "wall_s": round(time.perf_counter() - t0),
        "results": results,
    }
    return emit(summary, OUT, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

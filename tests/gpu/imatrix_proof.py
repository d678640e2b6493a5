"""Importance matrices and quantization with one on a real NVIDIA GPU machine, beside llama.cpp's own
llama-imatrix and llama-quantize (CUDA build of the same vendored sources), issue 17.

Run there by ``tests/gpu/imatrix_device.sh``:

    python tests/gpu/imatrix_proof.py MODELS_DIR OUT.json BIN_DIR

Two models of real shapes with random weights (tests/synthetic.py): a dense Llama (Llama-3.2-1B
widths, 8 layers) and a MoE (Qwen3-30B-A3B widths, 4 layers, 128 experts, 8 per token), both with a
32k vocabulary. For each: the matrix with every layer on the GPU (activations and the router's
choices copied from device memory in the eval callback) and on the CPU, ours and llama-imatrix's,
timed side by side and compared entry by entry; then Q4_K_M and IQ3_XXS with the matrix, ours and
llama-quantize's, timed and compared byte for byte.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.model.imatrix_file import read_imatrix  # noqa: E402
from app.engine.imatrix import calibration_text, compute_imatrix  # noqa: E402
from app.engine.quantize import quantize  # noqa: E402
from tests.synthetic import write_synthetic_gguf  # noqa: E402

MODELS: dict[str, dict[str, Any]] = {
    "llama-1b-8L": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 8,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                    "max_position_embeddings": 4096},
    "qwen3-30b-a3b-4L": {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
                         "moe_intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 32,
                         "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8,
                         "vocab_size": 32000, "max_position_embeddings": 4096},
}  # fmt: skip
CHUNKS = 8
THREADS = os.cpu_count() or 16


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return round(time.perf_counter() - t0, 2)


def compare(ours: Path, theirs: Path) -> dict[str, Any]:
    a, b = read_imatrix(ours), read_imatrix(theirs)
    worst, counts_equal = 0.0, sorted(a.entries) == sorted(b.entries)
    for name, e in b.entries.items():
        mine = a.entries.get(name)
        if mine is None or mine.sums.shape != e.sums.shape:
            counts_equal = False
            continue
        counts_equal &= bool(np.array_equal(mine.counts, e.counts))
        scale = float(np.abs(e.sums).max()) or 1.0
        worst = max(worst, float(np.abs(mine.sums - e.sums).max()) / scale)
    return {"entries": len(a.entries), "same_entries_and_counts": counts_equal, "worst_rel_diff": worst}


def one_model(name: str, models: Path, bins: Path, text: Path) -> dict[str, Any]:
    src = models / f"{name}-F16.gguf"
    if not src.exists():
        log(f"writing {name}")
        write_synthetic_gguf(MODELS[name], src)
    out: dict[str, Any] = {"model": name, "bytes": src.stat().st_size}
    for where, ngl in (("gpu", 99), ("cpu", 0)):
        ours, theirs = (
            models / f"{name}-{where}-ours.imatrix.gguf",
            models / f"{name}-{where}-llama.imatrix.gguf",
        )
        chunks = CHUNKS if ngl else CHUNKS // 2
        t_ours = timed(compute_imatrix, src, ours, text=text.read_text(encoding="utf-8"), text_name=text.name,
                       n_chunks=chunks, n_threads=THREADS, n_gpu_layers=ngl)  # fmt: skip
        t_llama = timed(subprocess.run, [str(bins / "llama-imatrix"), "-m", str(src), "-f", str(text), "-c", "512",
                        "-b", "512", "--chunks", str(chunks), "--no-ppl", "-t", str(THREADS), "-ngl", str(ngl), "-o",
                        str(theirs)], check=True, capture_output=True)  # fmt: skip
        out[f"imatrix_{where}"] = {"chunks": chunks, "ours_s": t_ours, "llama_s": t_llama,
                                   "ratio": round(t_ours / t_llama, 3), **compare(ours, theirs)}  # fmt: skip
        log(f"{name} imatrix {where}: {out[f'imatrix_{where}']}")
    matrix = models / f"{name}-gpu-ours.imatrix.gguf"
    for ftype in ("Q4_K_M", "IQ3_XXS"):
        a, b = models / f"{name}-{ftype}-ours.gguf", models / f"{name}-{ftype}-llama.gguf"
        a.unlink(missing_ok=True)
        t_ours = timed(quantize, src, a, to=ftype, imatrix=matrix, n_threads=THREADS)
        t_llama = timed(subprocess.run, [str(bins / "llama-quantize"), "--imatrix", matrix.name, str(src), str(b), ftype,
                        str(THREADS)], check=True, capture_output=True, cwd=matrix.parent)  # fmt: skip
        out[f"quantize_{ftype}"] = {"ours_s": t_ours, "llama_s": t_llama, "ratio": round(t_ours / t_llama, 3),
                                    "identical": filecmp.cmp(a, b, shallow=False)}  # fmt: skip
        log(f"{name} {ftype}: {out[f'quantize_{ftype}']}")
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)
    return out


def main() -> int:
    models, out, bins = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    models.mkdir(parents=True, exist_ok=True)
    text = models / "calibration.txt"
    text.write_text(calibration_text(), encoding="utf-8")
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()  # fmt: skip
    except FileNotFoundError:
        gpu = "none"
    results = {"benchmark": "imatrix_gpu", "gpu": gpu, "cpu_threads": THREADS, "models": []}
    for name in MODELS:
        results["models"].append(one_model(name, models, bins, text))  # type: ignore[union-attr]
        out.write_text(json.dumps(results, indent=1))
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What an importance matrix buys: mean KL divergence of low-bit quantizations made with and without
one, on the two real test models.

For each model: the matrix is computed by TailorLM (:func:`app.engine.imatrix.compute_imatrix`) from
the built-in calibration text; then :func:`app.engine.ladder.quality_ladder` quantizes the model to
each type — plain where llama.cpp allows it, and with the matrix — and scores every file against
the source on the quality check's own text (a different text from the calibration one, so the
matrix is not judged on what it was computed from). The sources are the published test files
(SmolLM2 Q4_1, Gemma 3 Q4_K_M), so "divergence" is from those files' own next-token distributions.

    python tests/bench/imatrix_quality.py [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.ladder import imatrix_gains  # noqa: E402
from app.engine.imatrix import compute_imatrix  # noqa: E402
from app.engine.ladder import quality_ladder  # noqa: E402
from tests.bench.engine_speed import machine  # noqa: E402
from tests.bench.report import emit  # noqa: E402
from tests.models import gemma3_path, smollm2_path  # noqa: E402

OUT = ROOT / "tests" / "bench" / "results" / "imatrix_quality.json"
TYPES = ("Q2_K", "Q3_K_S", "IQ3_XXS", "IQ4_XS")


def measure(name: str, model: Path, work: Path, threads: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    matrix = compute_imatrix(model, work / f"{model.stem}.imatrix.gguf", n_threads=threads)
    t1 = time.perf_counter()
    ladder = quality_ladder(model, types=TYPES, imatrix=matrix.path, n_threads=threads)
    rungs = {r.name: r.to_dict() for r in ladder.rungs}
    kld = {}
    for q in TYPES:
        plain, with_matrix = rungs.get(q), rungs[f"{q} + imatrix"]
        kld[q] = {"plain": plain["kld_mean"] if plain else None, "imatrix": with_matrix["kld_mean"],
                  "size_plain": plain["size_bytes"] if plain else None, "size_imatrix": with_matrix["size_bytes"]}  # fmt: skip
    imatrix = {"chunks": matrix.n_chunks, "tokens": matrix.n_tokens, "entries": matrix.n_entries,
               "seconds": round(t1 - t0, 1)}  # fmt: skip
    return {
        "model": name,
        "source_type": ladder.reference_quant,
        "imatrix": imatrix,
        "kld": kld,
        "reduction": imatrix_gains(ladder.rungs),
        "rungs": [r.to_dict() for r in ladder.rungs],
        "ladder_seconds": round(time.perf_counter() - t1, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tailorlm-imatrix-quality-") as tmp:
        os.environ["TAILORLM_HOME"] = str(Path(tmp) / "home")  # the ladder records what it measures
        models = [measure(n, p, Path(tmp), args.threads)
                  for n, p in (("SmolLM2-135M-Instruct", smollm2_path()), ("Gemma-3-270M", gemma3_path()))]  # fmt: skip
    report = {"benchmark": "imatrix_quality", "machine": machine(), "threads": args.threads, "types": list(TYPES),
              "llama_cpp_python": importlib.metadata.version("llama-cpp-python"), "models": models}  # fmt: skip
    return emit(report, OUT, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

"""Importance matrix and quantization with one: TailorLM beside llama.cpp's own tools, same model,
same text, same threads, side by side in each round (order alternating), so the ratio holds on a
shared, noisy machine.

- imatrix: ``tailorlm imatrix`` (:func:`app.engine.imatrix.compute_imatrix`: a child process, the
  ggml eval callback in Python) against ``llama-imatrix -c 512 -b 512 --no-ppl`` (the same work: one
  512-token chunk per decode, logits for every token, no perplexity). Wall time of the whole call,
  model load included, for both.
- quantize: :func:`app.engine.quantize.quantize` with that matrix against ``llama-quantize
  --imatrix``, and the two outputs compared byte for byte.

The tools are built from the same vendored llama.cpp (tests/llama_tools.py).

    python tests/bench/imatrix_speed.py [--rounds 3] [--chunks 6] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine.imatrix import calibration_text, compute_imatrix  # noqa: E402
from app.engine.quantize import quantize  # noqa: E402
from tests.bench.engine_speed import Others, machine, spread  # noqa: E402
from tests.bench.report import emit  # noqa: E402
from tests.llama_tools import build_tools  # noqa: E402
from tests.models import gemma3_path, smollm2_path  # noqa: E402
from tests.synthetic import write_synthetic_gguf  # noqa: E402

OUT = ROOT / "tests" / "bench" / "results" / "imatrix_speed.json"
QUANTS = ("Q3_K_S", "IQ4_XS")
# A MoE small enough for a laptop, with Qwen3-30B-A3B's widths: the expert path (MUL_MAT_ID).
MOE = {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
       "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
       "num_experts": 32, "num_experts_per_tok": 8, "vocab_size": 32000, "max_position_embeddings": 4096}  # fmt: skip


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_model(name: str, model: Path, tools: dict[str, Path], work: Path, args: argparse.Namespace,
                others: Others) -> dict[str, Any]:  # fmt: skip
    text = work / "calibration.txt"
    text.write_text(calibration_text(), encoding="utf-8")
    ours_m, theirs_m = work / f"{name}-ours.imatrix.gguf", work / f"{name}-llama.imatrix.gguf"

    def ours_imatrix() -> None:
        compute_imatrix(model, ours_m, text=text.read_text(encoding="utf-8"), text_name=text.name,
                        n_chunks=args.chunks, n_threads=args.threads)  # fmt: skip

    def llama_imatrix() -> None:
        subprocess.run([str(tools["llama-imatrix"]), "-m", str(model), "-f", str(text), "-c", "512", "-b", "512",
                        "--chunks", str(args.chunks), "--no-ppl", "-t", str(args.threads), "-o", str(theirs_m)],
                       check=True, capture_output=True)  # fmt: skip

    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        others.wait_for_quiet()
        row: dict[str, Any] = {}
        order = [("imatrix_ours_s", ours_imatrix), ("imatrix_llama_s", llama_imatrix)]
        for key, fn in order if r % 2 == 0 else reversed(order):
            row[key], row[key.replace("_s", "_others")] = others.during(lambda fn=fn: _timed(fn))
        for q in QUANTS:
            a, b = work / f"{name}-{q}-ours.gguf", work / f"{name}-{q}-llama.gguf"

            def ours_q(q: str = q, a: Path = a) -> None:
                a.unlink(missing_ok=True)
                quantize(model, a, to=q, imatrix=ours_m, n_threads=args.threads)

            def llama_q(q: str = q, b: Path = b) -> None:  # run beside the matrix, named as we name it
                subprocess.run([str(tools["llama-quantize"]), "--allow-requantize", "--imatrix", ours_m.name,
                                str(model), str(b), q, str(args.threads)], check=True, capture_output=True,
                               cwd=ours_m.parent)  # fmt: skip

            pair = [(f"{q}_ours_s", ours_q), (f"{q}_llama_s", llama_q)]
            for key, fn in pair if r % 2 == 0 else reversed(pair):
                row[key], _ = others.during(lambda fn=fn: _timed(fn))
            row[f"{q}_identical"] = filecmp.cmp(a, b, shallow=False)
        rounds.append(row)
    ratio = [x["imatrix_ours_s"] / x["imatrix_llama_s"] for x in rounds]
    result: dict[str, Any] = {
        "model": name,
        "chunks": args.chunks,
        "imatrix_ours_s": spread([x["imatrix_ours_s"] for x in rounds]),
        "imatrix_llama_s": spread([x["imatrix_llama_s"] for x in rounds]),
        "imatrix_ratio": spread(ratio),
        "rounds": rounds,
    }
    for q in QUANTS:
        result[f"{q}_ratio"] = spread([x[f"{q}_ours_s"] / x[f"{q}_llama_s"] for x in rounds])
        result[f"{q}_identical"] = all(x[f"{q}_identical"] for x in rounds)
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help=f"also write {OUT.relative_to(ROOT)}")
    args = ap.parse_args()
    tools = build_tools("llama-imatrix", "llama-quantize")
    others = Others()
    with tempfile.TemporaryDirectory(prefix="tailorlm-imatrix-bench-") as tmp:
        os.environ["TAILORLM_HOME"] = str(Path(tmp) / "home")
        moe = write_synthetic_gguf(MOE, Path(tmp) / "qwen3-moe-2L-32E-F16.gguf")
        sources = (("SmolLM2-135M-Instruct Q4_1", smollm2_path()), ("Gemma-3-270M Q4_K_M", gemma3_path()),
                   ("Qwen3-30B-A3B widths, 2 layers, 32 experts (random weights) F16", moe))  # fmt: skip
        models = [bench_model(n, p, tools, Path(tmp), args, others) for n, p in sources]
    report = {"benchmark": "imatrix_speed", "machine": machine(), "threads": args.threads, "rounds": args.rounds,
              "llama_cpp_python": importlib.metadata.version("llama-cpp-python"), "models": models}  # fmt: skip
    return emit(report, OUT, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

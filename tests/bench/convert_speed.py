"""Conversion and quantization: time and output size per type, with the size TailorLM predicted.

A real Hugging Face checkpoint is rebuilt from the SmolLM2-135M GGUF (tests/hf_checkpoint.py),
converted with llama.cpp's converter (in TailorLM's converter environment) to F16 and Q8_0, and
the F16 file quantized to the K-quants with llama.cpp's quantizer in a child process.

    python tests/bench/convert_speed.py [--threads 2]

Prints JSON; the README quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TAILORLM_CONVERTER_ENV", str(ROOT / ".cache" / "converter-env"))

from app.core.build.convert import converter_ready, predicted_bytes  # noqa: E402
from app.core.model.source import model_from_checkpoint  # noqa: E402
from app.engine.build import build_gguf  # noqa: E402
from tests.hf_checkpoint import build_checkpoint  # noqa: E402
from tests.models import smollm2_path  # noqa: E402

QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not converter_ready():
        sys.exit("set up the converter first: python -m app.cli convert --setup")
    work = Path(tempfile.mkdtemp(prefix="tailorlm-convert-bench-"))
    os.environ["TAILORLM_HOME"] = str(work / "home")
    try:
        ckpt = build_checkpoint(smollm2_path(), work / "SmolLM2-135M-Instruct")
        model = model_from_checkpoint(ckpt)
        rows = []
        t0 = time.perf_counter()
        f16 = build_gguf(ckpt, "F16", out=work / "F16.gguf", smoke_test=False, register=False)
        rows.append({"type": "F16", "step": "convert", "seconds": round(time.perf_counter() - t0, 2),
                     "bytes": f16.size_bytes, "predicted_bytes": predicted_bytes(model, "F16")})  # fmt: skip
        t0 = time.perf_counter()
        q8 = build_gguf(ckpt, "Q8_0", out=work / "Q8_0-direct.gguf", smoke_test=False, register=False)
        rows.append({"type": "Q8_0", "step": "convert", "seconds": round(time.perf_counter() - t0, 2),
                     "bytes": q8.size_bytes, "predicted_bytes": predicted_bytes(model, "Q8_0")})  # fmt: skip
        for q in QUANTS:
            t0 = time.perf_counter()
            res = build_gguf(f16.path, q, out=work / f"{q}.gguf", n_threads=args.threads, smoke_test=False,
                             register=False)  # fmt: skip
            rows.append({"type": q, "step": "quantize F16", "seconds": round(time.perf_counter() - t0, 2),
                         "bytes": res.size_bytes, "predicted_bytes": predicted_bytes(model, q)})  # fmt: skip
        for r in rows:
            r["size_error_pct"] = round(100 * (r["predicted_bytes"] - r["bytes"]) / r["bytes"], 2)
        print(json.dumps({"benchmark": "convert_speed", "model": "SmolLM2-135M-Instruct (rebuilt checkpoint, F32)",
                          "source_bytes": sum(f.stat().st_size for f in ckpt.glob("*.safetensors")),
                          "threads": args.threads, "results": rows}, indent=2))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""A GPU lent over the network (issue 20): `tailorlm worker` on a machine with an NVIDIA GPU lends
CUDA0 to a model process that sees no GPU of its own (CUDA_VISIBLE_DEVICES=""), on loopback.
Synthetic Llama-3.2-1B shapes (F16, real Llama 3 vocabulary size). For each placement: the worker's
buffers as llama.cpp allocated them against TailorLM's estimate, the worker's VRAM (nvidia-smi),
and generation speed (median of three loads, with the range) against the same file on this
machine's CPU alone.

    python tests/gpu/rpc_proof.py write MODELS_DIR
    python tests/gpu/rpc_proof.py run --models MODELS_DIR --out rpc-proof.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.estimate import RunSettings, estimate  # noqa: E402
from app.core.machine.workers import Endpoint, probe_worker  # noqa: E402
from app.core.model.source import model_from_gguf  # noqa: E402

MODEL_ID = "llama-3.2-1b-instruct"
PORT = 50052
N_CTX = 4096
ROUNDS = 3  # loads per placement; speeds are their median, with the range


def write(folder: Path) -> Path:
    from app.core.model.catalog import find_entry
    from tests.synthetic import write_synthetic_gguf

    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{MODEL_ID}-F16.gguf"
    if not dest.exists():
        write_synthetic_gguf(find_entry(MODEL_ID).config, dest.with_suffix(".part"))
        dest.with_suffix(".part").replace(dest)
    return dest


def _vram_used_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(out.split()[0])


def _generate(load: Any, tokens: int = 64) -> dict[str, Any]:
    from app.engine import protocol as P
    from app.engine.client import EngineClient

    with EngineClient() as client:
        loaded = client.load(load)
        vram = _vram_used_mib()
        done = None
        for ev in client.generate("Tell me about lighthouses.", P.Sampling(max_tokens=tokens, temperature=0.0,
                                                                           ignore_eos=True)):  # fmt: skip
            if isinstance(ev, P.Done):
                done = ev
    assert done is not None
    return {"buffers": dict(loaded.buffers), "gen_tok_s": done.gen_tok_s, "prompt_tok_s": done.prompt_tok_s,
            "vram_used_mib_loaded": vram}  # fmt: skip


def run(models: Path, out: Path) -> None:
    from app.engine import protocol as P

    path = models / f"{MODEL_ID}-F16.gguf"
    model = model_from_gguf(path)
    base = _vram_used_mib()
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--port", str(PORT)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    ep = Endpoint("127.0.0.1", PORT)
    for _ in range(300):
        w = probe_worker(ep, timeout_s=1)
        if w.usable:
            break
        time.sleep(0.2)
    result: dict[str, Any] = {"model": path.name, "n_layer": model.n_layer, "n_ctx": N_CTX,
                              "worker": {"free_bytes": w.devices[0].free_bytes, "total_bytes": w.devices[0].total_bytes,
                                         "rtt_s": w.rtt_s}, "vram_used_mib_before": base,
                              "vram_used_mib_worker_idle": _vram_used_mib(), "cases": []}  # fmt: skip
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the model process sees no GPU: only the worker's
    try:
        alone = [_generate(P.Load(model_path=str(path), n_ctx=N_CTX, flash_attn="on")) for _ in range(ROUNDS)]
        result["alone_gen_tok_s_rounds"] = [a["gen_tok_s"] for a in alone]
        result["alone_gen_tok_s"] = statistics.median(result["alone_gen_tok_s_rounds"])
        for ngl in (8, model.n_layer + 1):
            load = P.Load(model_path=str(path), n_ctx=N_CTX, n_gpu_layers=ngl, flash_attn="on",
                          rpc_devices=(str(ep),), tensor_split=(1.0,))  # fmt: skip
            rounds = [_generate(load) for _ in range(ROUNDS)]
            got = rounds[0]
            got["gen_tok_s"] = statistics.median(g["gen_tok_s"] for g in rounds)
            got["prompt_tok_s"] = statistics.median(g["prompt_tok_s"] for g in rounds)
            got["gen_tok_s_rounds"] = [g["gen_tok_s"] for g in rounds]
            s = RunSettings(n_ctx=N_CTX, n_gpu_layers=ngl, rpc_devices=(str(ep),), gpu_split=(1.0,))
            dev = estimate(model, None, s).device("GPU0")
            on_worker = {k.split(":")[0]: v for k, v in got["buffers"].items() if f"[{ep}]" in k}
            result["cases"].append({
                "n_gpu_layers": ngl, "gen_tok_s": got["gen_tok_s"], "prompt_tok_s": got["prompt_tok_s"],
                "gen_tok_s_rounds": got["gen_tok_s_rounds"],
                "measured": on_worker, "predicted": {"model": dev.weights_bytes, "kv": dev.kv_bytes,
                                                     "compute": dev.compute_bytes, "total": dev.total_bytes},
                "error": dev.total_bytes / sum(on_worker.values()) - 1,
                "vram_used_mib_loaded": got["vram_used_mib_loaded"],
            })  # fmt: skip
            print(json.dumps(result["cases"][-1]), flush=True)
    finally:
        worker.kill()
        worker.wait()
        result["worker_log"] = (worker.stdout.read() if worker.stdout else "")[-3000:]
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("write").add_argument("models", type=Path)
    r = sub.add_parser("run")
    r.add_argument("--models", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "write":
        print(write(a.models))
    else:
        run(a.models, a.out)


if __name__ == "__main__":
    main()

"""Benchmark: pooling over two workers (`tailorlm worker`, llama.cpp RPC) against this machine alone,
at the same quantization (the file's), side by side in each round (issue 20).

Per model and round: the model process alone (every layer here), then pooled — a third of the
layers here, a third on each of two workers on this machine (each its own process with one thread,
reached through a counting TCP relay, so the bytes that would cross a network are measured). Reports
generation and prompt tokens/s, the pooled/alone ratio, and the network bytes per generated token,
measured and as TailorLM predicts them (app/core/advice/rpc_link.py) — for TailorLM's placement (the
output matmul's weights stay here) and for llama.cpp's own (the output layer on the last worker,
whose logits then cross the network every token). Loopback has no
network latency: on a real LAN each of a token's round trips adds ~0.2-0.5 ms more.

    python tests/bench/pooling.py [--rounds 3] [--tokens 64] [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.estimate import estimate  # noqa: E402
from app.core.advice.placement import layer_devices  # noqa: E402
from app.core.advice.rpc_link import link_cost  # noqa: E402
from app.core.advice.run_settings import RunSettings  # noqa: E402
from app.core.model.source import model_from_gguf  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests import models  # noqa: E402
from tests.bench.engine_speed import machine  # noqa: E402
from tests.byte_relay import ByteRelay  # noqa: E402
from tests.test_workers import WorkerProc  # noqa: E402

RESULT = ROOT / "tests/bench/results/pooling.json"
PROMPT = "<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n"
N_CTX = 1024


def _run(engine: EngineClient, relays: list[ByteRelay], tokens: int) -> dict[str, float]:
    first_at, first_tokens, n, done = None, 0, 0, None
    for ev in engine.generate(
        PROMPT, P.Sampling(max_tokens=tokens, temperature=0.0, ignore_eos=True), flush_ms=0
    ):
        if isinstance(ev, P.TokenChunk):
            n += ev.n_tokens
            if first_at is None:
                first_at, first_tokens = sum(r.total for r in relays), n
        elif isinstance(ev, P.Done):
            done = ev
    assert done is not None and first_at is not None
    moved = sum(r.total for r in relays) - first_at
    return {"gen_tok_s": done.gen_tok_s, "prompt_tok_s": done.prompt_tok_s, "prompt_tokens": done.n_prompt_tokens,
            "bytes_per_token": moved / max(1, n - first_tokens) if relays else 0.0}  # fmt: skip


def bench_model(path: Path, rounds: int, tokens: int) -> dict[str, Any]:
    model = model_from_gguf(path)
    workers = [WorkerProc(2**30), WorkerProc(2**30)]
    relays = [ByteRelay(w.port) for w in workers]
    ngl = model.n_layer + 1 - (model.n_layer + 1) // 3  # a third stays here
    pooled = P.Load(model_path=str(path), n_ctx=N_CTX, n_gpu_layers=ngl, n_threads=1, output_here=True,
                    rpc_devices=tuple(r.endpoint for r in relays), tensor_split=(1.0, 1.0))  # fmt: skip
    default = replace(
        pooled, output_here=False
    )  # llama.cpp's own placement: the output layer on the last worker
    alone = P.Load(model_path=str(path), n_ctx=N_CTX, n_threads=1)
    s = RunSettings(n_ctx=N_CTX, n_gpu_layers=ngl, rpc_devices=pooled.rpc_devices, gpu_split=(1.0, 1.0),
                    output_here=True)  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {"alone": [], "pooled": [], "pooled_default": []}
    buffers: dict[str, int] = {}
    try:
        for _ in range(rounds):
            for name, req in (("alone", alone), ("pooled", pooled), ("pooled_default", default)):
                with EngineClient() as engine:
                    loaded = engine.load(req)
                    if name == "pooled":
                        buffers = dict(loaded.buffers)
                    runs[name].append(_run(engine, relays if name != "alone" else [], tokens))
    finally:
        for w in workers:
            w.stop()
        for r in relays:
            r.close()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    est = {d.device: d.total_bytes for d in estimate(model, None, s).devices}
    memory = []
    for i, r in enumerate(relays):  # a worker's buffers, as llama.cpp logged them, against the estimate
        got = sum(n for k, n in buffers.items() if f"[{r.endpoint}]" in k)
        memory.append({"device": f"worker {i + 1}", "predicted_bytes": est[f"GPU{i}"], "measured_bytes": got,
                       "error": est[f"GPU{i}"] / got - 1})  # fmt: skip
    ratios = [p["gen_tok_s"] / a["gen_tok_s"] for a, p in zip(runs["alone"], runs["pooled"], strict=True)]
    default_ratios = [
        p["gen_tok_s"] / a["gen_tok_s"] for a, p in zip(runs["alone"], runs["pooled_default"], strict=True)
    ]
    measured = med("pooled", "bytes_per_token")
    # predicted at the run's middle depth: the prompt and half the answer in the cache
    depth = int(med("pooled", "prompt_tokens")) + tokens // 2
    predicted = link_cost(model, s, layer_devices(model.n_layer, s), depth, {}).bytes_per_token
    s_default = replace(s, output_here=False)
    predicted_default = link_cost(
        model, s_default, layer_devices(model.n_layer, s_default), depth, {}
    ).bytes_per_token
    return {
        "model": path.name, "n_layer": model.n_layer, "pooled_layers_here": model.n_layer + 1 - ngl,
        "alone_gen_tok_s": med("alone", "gen_tok_s"), "pooled_gen_tok_s": med("pooled", "gen_tok_s"),
        "alone_prompt_tok_s": med("alone", "prompt_tok_s"), "pooled_prompt_tok_s": med("pooled", "prompt_tok_s"),
        "gen_ratio": statistics.median(ratios), "gen_ratios": [round(x, 3) for x in ratios],
        "bytes_per_token_measured": measured, "bytes_per_token_predicted": predicted,
        "bytes_ratio": measured / predicted if predicted else None, "memory": memory,
        "default_gen_tok_s": med("pooled_default", "gen_tok_s"), "default_gen_ratio": statistics.median(default_ratios),
        "default_gen_ratios": [round(x, 3) for x in default_ratios],
        "default_bytes_per_token_measured": med("pooled_default", "bytes_per_token"),
        "default_bytes_per_token_predicted": predicted_default, "runs": runs,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--write", action="store_true", help=f"also write {RESULT.relative_to(ROOT)}")
    args = ap.parse_args()
    out = {"machine": machine(), "rounds": args.rounds, "tokens": args.tokens, "n_ctx": N_CTX,
           "threads_per_process": 1,
           "models": [bench_model(p, args.rounds, args.tokens) for p in (models.smollm2_path(), models.gemma3_path())]}  # fmt: skip
    text = json.dumps(out, indent=2)
    print(text)
    if args.write:
        RESULT.write_text(text + "\n")


if __name__ == "__main__":
    main()

"""Benchmark: how fast Stop ends an answer while the model is still reading a long prompt — issue
12's bound: Stop pressed 100 ms into a ~4k-token prompt ends the request within 50 ms.

Through the real path (EngineClient → the model process → llama.cpp's abort callback), with the
model already loaded: each trial sends a different ~4,000-token prompt (no cached prefix), presses
Stop from another thread ``--delay-ms`` later and times the cancel call to the ``Done``. Also times
one uncancelled 512-token prompt batch, to show the stop lands inside a batch, not after it.
Prints JSON with the median and spread, and the machine (CPU model, cores, ISA, load).

    python tests/bench/stop_latency.py [--trials 15] [--delay-ms 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests import models  # noqa: E402
from tests.engine.stop_trials import long_prompt, stop_after  # noqa: E402

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_int8")  # fmt: skip
BOUND_MS = 50.0


def machine() -> dict[str, object]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    import psutil

    return {"cpu_model": model, "physical_cores": psutil.cpu_count(logical=False), "logical_cores": os.cpu_count(),
            "isa": [f for f in ISA_FLAGS if f in flags], "system": platform.system(),
            "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=4000)
    args = ap.parse_args()
    path = models.smollm2_path()
    before = machine()
    with EngineClient() as engine:
        engine.load(P.Load(model_path=str(path), n_ctx=4608, n_threads=args.threads))
        latencies, n_prompt, n_evaluated = [], [], []
        for trial in range(args.trials):
            latency, done = stop_after(
                engine, long_prompt(engine, trial, args.prompt_tokens), args.delay_ms / 1000
            )
            assert done.stop_reason == "cancelled", done
            latencies.append(latency * 1000)
            n_prompt.append(done.n_prompt_tokens)
            n_evaluated.append(done.n_prompt_evaluated)
        batch = list(engine.generate(long_prompt(engine, -1, 512), P.Sampling(temperature=0, max_tokens=1)))[
            -1
        ]
        assert isinstance(batch, P.Done) and batch.prompt_tok_s
    q = statistics.quantiles(latencies, n=10)
    print(json.dumps({
        "benchmark": "stop_latency",
        "machine": {**before, "load_avg_1min_after": machine()["load_avg_1min"]},
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "model": path.name, "n_ctx": 4608, "n_threads": args.threads, "n_batch": 512,
        "prompt_tokens": statistics.median(t for t in n_prompt if t is not None),
        "delay_ms": args.delay_ms, "trials": args.trials, "bound_ms": BOUND_MS,
        "latency_ms": {"median": statistics.median(latencies), "p10": q[0], "p90": q[-1], "min": min(latencies),
                       "max": max(latencies), "stdev": statistics.stdev(latencies),
                       "all": [round(x, 1) for x in latencies]},
        "within_bound": sum(x < BOUND_MS for x in latencies),
        "prompt_tokens_evaluated_before_stop": n_evaluated,
        "one_512_token_batch_ms": 512 / batch.prompt_tok_s * 1000,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what picking a token with the chat's default sampling costs on this CPU, per token,
for the vocabularies people run — the C helper (app/engine/native/topk.c) against its numpy
fallback and against a bare argmax (greedy's floor on the host).

Each pick is ``TopKSampler.pick`` as the model process runs it: the repeat penalty over a 64-token
history, the exact top-k cut, then llama.cpp's own ``top_k → top_p → min_p → temp → dist`` chain on
the candidates. The logits are model-shaped (a long tail, a dozen strong candidates) and every pick
reads another of 32 arrays, so the caches have not just seen them — as with the logits a GPU hands
back every token. Both paths are seeded alike and must pick the same tokens (checked).

Rounds interleave the contenders (their order rotates); each round's figure is the median pick over
its 256 picks; the JSON has the median (min–max) over rounds and the ratios taken within rounds.
``--write`` stores it as ``tests/bench/results/sampler_speed.json``.

    python tests/bench/sampler_speed.py [--rounds 9] [--write]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine import native  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.engine.sampler import TopKSampler  # noqa: E402
from tests.bench.engine_speed import machine, spread  # noqa: E402
from tests.bench.report import emit  # noqa: E402

VOCABULARIES = {"Gemma 3": 262_144, "Qwen2.5": 151_936, "Llama 3": 128_256, "SmolLM2": 49_152}
N_ARRAYS, PICKS = 32, 256


def _logits(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal(n).astype(np.float32) * 2.5 - 1.0
    x[rng.choice(n, 12, replace=False)] += rng.uniform(6, 9, 12).astype(np.float32)
    return x


def _per_pick_us(pick: Callable[[np.ndarray], Any], arrays: list[np.ndarray]) -> tuple[float, list[Any]]:
    times, out = [], []
    for i in range(PICKS):
        x = arrays[i % len(arrays)]
        t0 = time.perf_counter()
        out.append(pick(x))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6, out


def run(rounds: int) -> dict[str, Any]:
    import llama_cpp as L

    lib = native.library()
    if lib is None:
        raise SystemExit(f"the C helper is not available here: {native.why_not()}")
    rng = np.random.default_rng(20261204)
    before = machine()
    results = []
    for name, n in VOCABULARIES.items():
        arrays = [_logits(n, rng) for _ in range(N_ARRAYS)]
        history = [int(t) for t in np.argsort(-arrays[0])[:8]] + rng.integers(0, n, 56).tolist()
        per: dict[str, list[float]] = {"argmax": [], "C": [], "numpy": []}
        for r in range(rounds):
            s = P.Sampling(seed=r)
            samplers = {"C": TopKSampler(L, n, s), "numpy": TopKSampler(L, n, s, use_native=False)}
            try:
                for sampler in samplers.values():
                    for t in history:
                        sampler.penalty.accept(t)
                picks = {"argmax": np.argmax, "C": samplers["C"].pick, "numpy": samplers["numpy"].pick}
                order = list(picks)[r % 3 :] + list(picks)[: r % 3]
                tokens = {}
                for c in order:
                    us, tokens[c] = _per_pick_us(picks[c], arrays)
                    per[c].append(us)
                assert tokens["C"] == tokens["numpy"], f"{name}: the two paths picked different tokens"
            finally:
                for sampler in samplers.values():
                    sampler.close()
        results.append({
            "vocabulary": name, "n_vocab": n,
            "pick_us": {c: spread(v) for c, v in per.items()},
            "ratios": {"numpy_over_c": spread([a / b for a, b in zip(per["numpy"], per["C"], strict=True)]),
                       "c_over_argmax": spread([a / b for a, b in zip(per["C"], per["argmax"], strict=True)])},
        })  # fmt: skip
    return {
        "benchmark": "sampler_speed",
        "date": datetime.date.today().isoformat(),
        "rounds": rounds,
        "picks_per_round": PICKS,
        "settings": "chat defaults (protocol.Sampling()): top-k 40, top-p 0.95, min-p 0.05, temperature 0.7, "
        "repeat penalty 1.1 over 64 tokens",
        "helper": lib.path.name,
        "machine": {**before, "load_avg_1min_after": machine()["load_avg_1min"]},
        "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    out = ROOT / "tests" / "bench" / "results" / "sampler_speed.json"
    return emit(run(args.rounds), out, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

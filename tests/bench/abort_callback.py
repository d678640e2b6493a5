"""Benchmark: what llama.cpp's abort callback costs a token on this CPU — the Python callback the model
process used to give it, the C one it gives it now (app/engine/native/abort.c), and none.

ggml's CPU backend calls the callback after every node of a graph from its first thread while the
others wait at the barrier after it, so a token of a model on the CPU makes hundreds of calls. One
model process per model, one context; the three callbacks take turns (``llama_set_abort_callback``,
the order rotating every round) over the same decode loop: 48 tokens a round after a 200-token
prompt, greedy tokens of a fixed sequence, ``llama_synchronize`` after each decode as llama-bench
does. Ratios are taken within a round against the Python callback.

    python tests/bench/abort_callback.py [--rounds 9] [--threads 2] [--write]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine import native  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from tests.bench.engine_speed import machine, spread  # noqa: E402
from tests.bench.report import emit  # noqa: E402
from tests.models import gemma3_path, smollm2_path  # noqa: E402

N_TOKENS, N_PROMPT_WORDS = 48, 200


def bench_model(path: Path, rounds: int, threads: int) -> dict[str, Any]:
    import llama_cpp as L

    from app.engine.llama_session import LlamaSession
    from app.engine.token_stream import GenStats

    lib = native.library()
    if lib is None:
        raise SystemExit(f"the C helpers are not available here: {native.why_not()}")
    session = LlamaSession()
    session.load(P.Load(model_path=str(path), n_ctx=1024, n_gpu_layers=0, n_threads=threads), lambda f: None)
    assert isinstance(session.cancel, native.AbortFlag)
    event = threading.Event()

    @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)
    def in_python(user: ctypes.c_void_p) -> bool:
        return event.is_set()

    callbacks = {"Python": (in_python, None),
                 "C": (L.ggml_abort_callback(lib.abort_address), ctypes.addressof(session.cancel.flag)),
                 "none": (L.ggml_abort_callback(), None)}  # fmt: skip
    prompt = session.tokenize(" ".join(str(i) for i in range(N_PROMPT_WORDS)))
    assert session._evaluate_prompt(prompt, GenStats())
    token = (L.llama_token * 1)()
    batch = L.llama_batch_get_one(token, 1)
    rates: dict[str, list[float]] = {c: [] for c in callbacks}
    try:
        for r in range(rounds):
            order = list(callbacks)[r % 3 :] + list(callbacks)[: r % 3]
            for c in order:
                L.llama_set_abort_callback(session.ctx, *callbacks[c])
                t0 = time.perf_counter()
                for i in range(N_TOKENS):
                    token[0] = 100 + i
                    if L.llama_decode(session.ctx, batch) != 0:
                        raise RuntimeError("decode failed")
                    L.llama_synchronize(session.ctx)
                rates[c].append(N_TOKENS / (time.perf_counter() - t0))
                L.llama_memory_seq_rm(L.llama_get_memory(session.ctx), 0, len(prompt), -1)
    finally:
        session.unload()
    over = {c: spread([a / b for a, b in zip(rates[c], rates["Python"], strict=True)]) for c in ("C", "none")}
    return {"model": path.name, "tok_s": {c: spread(v) for c, v in rates.items()}, "over_python": over}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    before = machine()
    results = [bench_model(p, args.rounds, args.threads) for p in (smollm2_path(), gemma3_path())]
    report = {"benchmark": "abort_callback", "date": datetime.date.today().isoformat(), "rounds": args.rounds,
              "threads": args.threads, "tokens_per_round": N_TOKENS,
              "machine": {**before, "load_avg_1min_after": machine()["load_avg_1min"]}, "results": results}  # fmt: skip
    return emit(report, ROOT / "tests" / "bench" / "results" / "abort_callback.json", write=args.write)


if __name__ == "__main__":
    sys.exit(main())

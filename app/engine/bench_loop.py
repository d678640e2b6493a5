"""The benchmark inside the model process: llama-bench's measurement on the loaded model.

As ``llama-bench`` (tools/llama-bench/llama-bench.cpp) measures ``pp`` and ``tg``: random tokens,
no sampling, the cache cleared before each repetition; a prompt of ``n_prompt`` tokens decoded in
``n_batch`` batches into an empty cache (prompt speed), then ``n_gen`` tokens decoded one at a time
after it (generation speed at a depth of ``n_prompt``, as a chat writes its answer after a prompt).
One warm-up pass first (a short prompt and one token: every weight is read once, so the first
repetition does not pay for page faults), then repetitions while the time budget lasts, at least
one. When even one full repetition would not fit the budget (a big model on a slow machine), the
token counts shrink to what fits, never under ``MIN_PROMPT``/``MIN_GEN``; the result says what was
measured.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.errors import EngineError

if TYPE_CHECKING:
    from app.engine.llama_session import LlamaSession

MIN_PROMPT, MIN_GEN = 64, 16
WARMUP_PROMPT = 32
SEED = 1234  # the same random tokens on every run: what is measured does not change by chance


@dataclass
class BenchRuns:
    n_prompt: int
    n_gen: int
    prompt_tok_s: list[float]
    gen_tok_s: list[float]
    stop_reason: str  # "done" | "cancelled"


class _Cancelled(Exception):
    pass


def run_bench(
    session: LlamaSession, *, n_prompt: int, n_gen: int, reps: int, budget_s: float,
    on_progress: Callable[[float], None],
) -> BenchRuns:  # fmt: skip
    """Measure the loaded model; see the module doc. ``on_progress`` gets the share of the work done."""
    L, ctx = session.L, session.ctx
    n_ctx = int(L.llama_n_ctx(ctx))
    n_batch = int(L.llama_n_batch(ctx))
    n_vocab = int(L.llama_vocab_n_tokens(session.vocab))
    n_prompt = max(1, min(n_prompt, n_ctx - 2))  # the plan's context bounds the measurement
    n_gen = max(1, min(n_gen, n_ctx - 1 - n_prompt))
    rng = random.Random(SEED)
    tokens = [rng.randrange(n_vocab) for _ in range(n_prompt + n_gen)]
    memory = L.llama_get_memory(ctx)
    arr = (L.llama_token * n_batch)()

    def decode(toks: list[int]) -> None:
        for i in range(0, len(toks), n_batch):
            chunk = toks[i : i + n_batch]
            arr[: len(chunk)] = chunk
            rc = int(L.llama_decode(ctx, L.llama_batch_get_one(arr, len(chunk))))
            if rc == 2 or session.cancel.is_set():
                raise _Cancelled
            if rc != 0:
                raise EngineError(f"llama_decode failed with code {rc} during the benchmark.")
        L.llama_synchronize(ctx)

    def rep(np_: int, ng: int) -> tuple[float, float]:
        L.llama_memory_clear(memory, True)
        t0 = time.perf_counter()
        decode(tokens[:np_])
        t1 = time.perf_counter()
        for tok in tokens[np_ : np_ + ng]:
            decode([tok])
        t2 = time.perf_counter()
        return np_ / (t1 - t0), ng / (t2 - t1)

    t_start = time.perf_counter()
    runs = BenchRuns(n_prompt, n_gen, [], [], "done")
    try:
        warm_pp, warm_tg = rep(min(WARMUP_PROMPT, n_prompt), 1)
        # one repetition at full size, estimated from the warm-up; shrink it to fit the budget
        left = budget_s - (time.perf_counter() - t_start)
        full = n_prompt / max(warm_pp, 1e-9) + n_gen / max(warm_tg, 1e-9)
        if full > left:
            share = max(left, 0.0) / full
            runs.n_prompt = max(min(MIN_PROMPT, n_prompt), int(n_prompt * share))
            runs.n_gen = max(min(MIN_GEN, n_gen), int(n_gen * share))
        per_rep = runs.n_prompt / max(warm_pp, 1e-9) + runs.n_gen / max(warm_tg, 1e-9)
        for i in range(max(1, reps)):
            if i and time.perf_counter() - t_start + per_rep > budget_s:
                break  # the budget ends the repetitions, never the first one
            t_rep = time.perf_counter()
            pp, tg = rep(runs.n_prompt, runs.n_gen)
            per_rep = time.perf_counter() - t_rep
            runs.prompt_tok_s.append(pp)
            runs.gen_tok_s.append(tg)
            on_progress((i + 1) / max(1, reps))
    except _Cancelled:
        runs.stop_reason = "cancelled"
    finally:
        L.llama_memory_clear(memory, True)
        session.kv_tokens = []  # the next chat request starts from an empty cache
    return runs

"""From logits to text: sampling, incremental detokenizing, stop strings and batched flushes — the
decode loop of one answer, once its prompt is in the KV cache.

Each token is one ``llama_decode`` of a single-token batch; :mod:`app.engine.sampler` picks it.
The next decode is started as soon as a token is chosen, before its text is made and sent: on a
GPU ``llama_decode`` returns once the graph is queued (the wait is in ``llama_get_logits_ith``),
so the detokenizing, the stop strings and the pipe to the window overlap the model's work
instead of adding to it. A token that turns out to complete a stop string has then been decoded
into the KV cache; that is harmless (the next prompt keeps only the prefix it shares). Runs only
inside the model process.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.engine.protocol import Sampling
from app.engine.sampler import Sampler


@dataclass(frozen=True)
class Piece:
    text: str
    n_tokens: int


@dataclass
class GenStats:
    """Filled in while one request runs; None is "did not happen" (no token, prompt not finished)."""

    stop_reason: str = "max_tokens"
    n_prompt_tokens: int | None = None
    n_prompt_evaluated: int = 0
    n_gen_tokens: int = 0
    ttft_s: float | None = None
    prompt_s: float | None = None
    gen_s: float | None = None


@dataclass(frozen=True)
class Decoder:
    """What the loop needs of a loaded session: llama.cpp's module, the context, the vocabulary,
    the list of tokens in the KV cache (appended to), and the cancel flag of the request."""

    L: Any
    ctx: Any
    vocab: Any
    kv_tokens: list[int]
    cancel: threading.Event


def stream_answer(d: Decoder, sampler: Sampler, s: Sampling, stats: GenStats, *, t_req: float,
                  n_ctx: int, flush_s: float) -> Iterator[Piece]:  # fmt: skip
    """Sample, decode and yield text pieces (one every ``flush_s``, the first at once) until EOS, a
    stop string, ``max_tokens``, a full context or a cancel; fills ``stats``."""
    L, ctx, vocab = d.L, d.ctx, d.vocab
    t_start = time.perf_counter()
    piece_buf = ctypes.create_string_buffer(256)
    pending = bytearray()  # bytes of an unfinished UTF-8 character
    out_text: list[str] = []
    n_since_flush = 0
    last_flush = time.perf_counter()
    hold = max((len(x) for x in s.stop), default=0)  # characters held back to catch stop strings
    emitted = 0  # characters of out_text already sent
    tok_arr = (L.llama_token * 1)()
    batch = L.llama_batch_get_one(tok_arr, 1)
    decode, to_piece, is_eog = L.llama_decode, L.llama_token_to_piece, L.llama_vocab_is_eog
    stop_reason = "max_tokens"
    n_gen = 0
    while n_gen < s.max_tokens:
        tok = sampler.sample(ctx)
        if n_gen == 0:
            stats.ttft_s = time.perf_counter() - t_req
        if is_eog(vocab, tok) and not s.ignore_eos:
            stop_reason = "eos"
            break
        n_gen += 1
        full = len(d.kv_tokens) + 1 >= n_ctx
        cancelled = d.cancel.is_set()
        rc = 0
        if not (full or cancelled):
            tok_arr[0] = tok
            rc = decode(ctx, batch)  # queued: the text work below overlaps it on a GPU
            if rc == 0:
                d.kv_tokens.append(tok)
        n = to_piece(vocab, tok, piece_buf, 256, 0, False)
        pending += piece_buf.raw[:n]
        try:
            text = pending.decode("utf-8")
            pending.clear()
        except UnicodeDecodeError:
            text = ""  # wait for the rest of a multi-byte character
        if text:
            out_text.append(text)
        n_since_flush += 1
        if s.stop and text:
            joined = "".join(out_text)
            hit = min(
                (i for i in (joined.find(x, max(0, emitted - hold)) for x in s.stop) if i >= 0), default=-1
            )
            if hit >= 0:
                if hit > emitted:
                    yield Piece(joined[emitted:hit], n_since_flush)
                stop_reason = "stop_string"
                n_since_flush = 0
                emitted = hit
                break
        if full:
            stop_reason = "context_full"
            break
        if cancelled or rc == 2:  # 2: the abort callback stopped the graph
            stop_reason = "cancelled"
            break
        if rc != 0:
            if d.cancel.is_set():
                stop_reason = "cancelled"
                break
            raise RuntimeError(f"llama_decode failed with code {rc}")
        now = time.perf_counter()
        if now - last_flush >= flush_s or n_gen == 1:  # the first token goes out at once (TTFT)
            joined = "".join(out_text)
            upto = len(joined) - hold if s.stop else len(joined)
            if upto > emitted:
                yield Piece(joined[emitted:upto], n_since_flush)
                emitted = upto
                n_since_flush = 0
            last_flush = now
    if stop_reason != "stop_string":
        joined = "".join(out_text)
        if len(joined) > emitted or n_since_flush:
            yield Piece(joined[emitted:], n_since_flush)
    stats.stop_reason = stop_reason
    stats.n_gen_tokens = n_gen
    stats.gen_s = time.perf_counter() - t_start if n_gen else None

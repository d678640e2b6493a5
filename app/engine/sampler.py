"""Choosing the next token: llama.cpp's sampler chain, without its per-token cost over the whole
vocabulary.

The chat's default chain is llama.cpp's ``penalties → top-k → top-p → min-p → temperature →
dist``. Run as is, ``llama_sampler_sample`` copies every logit into a candidate array and
partially sorts it: ~7.5 ns per vocabulary entry, 2 ms a token for Gemma's 262k tokens, which
halves the speed of a small model on a GPU. Only the first two steps ever see the whole
vocabulary, so :class:`TopKSampler` does those two here and hands the rest to the very same C
chain:

1. The repeat penalty touches only the tokens of the recent history (≤ ``repeat_last_n``); they
   are changed in place in llama.cpp's logits with the C sampler's own float32 arithmetic, and
   put back afterwards.
2. The top-k candidates are found without sorting the vocabulary: the logits are split into
   blocks of ``BLOCK`` consecutive tokens, whose maxima take one vectorised pass. The k-th largest
   block maximum ``t`` is a value that at least k logits reach, so every top-k logit is ≥ ``t`` —
   and every logit ≥ ``t`` sits in a block whose maximum is ≥ ``t``. Those few blocks (about k)
   are all that is searched. Nothing is approximated: the candidates are a superset of the top k,
   in token order. Both steps run in C (``app/engine/native/topk.c``, one call a token) where the
   helper could be found or built, else in numpy: on the GPU the pick is what a token waits for.
3. The candidates (k and a few ties) go to llama.cpp's ``top_k → top_p → min_p → temp → dist``
   chain through ``llama_sampler_apply``. Given the same candidates it is the same code as the
   full chain, with the same seeded ``mt19937``, so the distribution is llama.cpp's by
   construction; tests/engine/test_sampler.py checks it draw by draw and statistically.

Settings that need the whole vocabulary after the penalty (top-k off) use the full C chain
(:class:`ChainSampler`); plain greedy decoding is an argmax over a zero-copy view of the logits
(:class:`GreedySampler`).

llama.cpp's backend sampling (``llama_set_sampler``: the chain inside the model's graph) is not
used although it is the fastest on a GPU (H200, Gemma-3-1B shapes, 262k tokens, default chain:
464 tok/s vs 417 here and 457 for greedy's host argmax, tests/gpu/speed_proof.py ``raw``): it
does not draw from the same distribution as the chain. On SmolLM2 logits whose top token has
p = 0.981 among the top 40, top-p 0.98 keeps that one token in the chain and two tokens on the
backend (the second drawn 5 % of the time; tests/gpu/speed_proof.py ``backend distribution``).
Running only the exact top-k in the graph (candidates of top k + repeat_last_n read back with
``llama_get_sampled_candidates_ith``, the penalty and the tail chain here) was tried too: the same
tokens as the chain, but on the H200 no faster than this path (430.9 vs 431.5 tok/s) — ggml's
top-k over 262k entries costs the GPU what the host saves. A cheaper cut in the graph (max-pool
the logits in blocks of 128, ``top_k`` over the block maxima, gather those blocks: the same draws
on the CPU backend) ran Gemma's shapes at 0.88/0.95× greedy on the H200 but the Qwen and Llama
vocabularies, whose block counts are not powers of two, at 0.08–0.26× (2026-12-03); not used.
Runs only inside the model process.
"""

from __future__ import annotations

import ctypes
from collections import deque
from typing import Any, Protocol

import numpy as np

from app.engine import native
from app.engine.protocol import Sampling

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.h: a random seed
BLOCK = 128  # tokens per block of the top-k cut: 2,048 block maxima for 262k tokens (topk.c's TLM_BLOCK)


class Sampler(Protocol):
    def sample(self, ctx: Any) -> int:
        """The next token from the last output's logits; it joins the penalty history."""
        ...

    def close(self) -> None: ...


def make_sampler(L: Any, vocab: Any, s: Sampling, *, ctx: Any = None) -> Sampler:
    """The sampler for ``s``. With ``ctx`` (a context whose output layer is on a GPU), greedy
    decoding runs in the model's graph: only the token comes back, not the logits."""
    n_vocab = int(L.llama_vocab_n_tokens(vocab))
    if s.grammar:
        from app.engine.grammar_sampler import GrammarSampler

        return GrammarSampler(L, vocab, n_vocab, s)
    if s.temperature <= 0 and s.repeat_penalty == 1.0 and not (s.frequency_penalty or s.presence_penalty):
        return GreedySampler(L, n_vocab, ctx=ctx)
    if s.temperature <= 0 or 0 < s.top_k < n_vocab:
        return TopKSampler(L, n_vocab, s)
    return ChainSampler(L, n_vocab, s)


class LogitsView:
    """llama.cpp's logits of the last output as a float32 view (no copy), the view kept while
    llama.cpp's buffer stays where it is: making one costs more than the rest of a greedy pick."""

    def __init__(self, L: Any, n_vocab: int) -> None:
        self.L, self.n_vocab = L, n_vocab
        self.address: int | None = None
        self.view = np.empty(0, dtype=np.float32)

    def __call__(self, ctx: Any) -> np.ndarray:
        ptr = self.L.llama_get_logits_ith(ctx, -1)  # waits for the decode
        address = ctypes.cast(ptr, ctypes.c_void_p).value
        if address != self.address:
            self.address, self.view = address, np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
        return self.view


def _seed(s: Sampling) -> int:
    return s.seed if s.seed >= 0 else LLAMA_DEFAULT_SEED


def tail_chain(L: Any, s: Sampling) -> Any:
    """llama.cpp's chain after the penalty: ``top_k → top_p → min_p → temp → dist`` as the
    settings ask (greedy when the temperature is 0)."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    if s.temperature <= 0:
        add(chain, L.llama_sampler_init_greedy())
        return chain
    if s.top_k > 0:
        add(chain, L.llama_sampler_init_top_k(s.top_k))
    if s.top_p < 1.0:
        add(chain, L.llama_sampler_init_top_p(s.top_p, 1))
    if s.min_p > 0:
        add(chain, L.llama_sampler_init_min_p(s.min_p, 1))
    add(chain, L.llama_sampler_init_temp(s.temperature))
    add(chain, L.llama_sampler_init_dist(_seed(s)))
    return chain


def full_chain(L: Any, n_vocab: int, s: Sampling) -> Any:
    """llama.cpp's whole chain for ``s``, the penalty first (what :class:`ChainSampler` runs, and
    the reference the fast path is tested against)."""
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    if s.repeat_penalty != 1.0 or s.frequency_penalty or s.presence_penalty:
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(
            n_vocab, s.repeat_last_n, s.repeat_penalty, s.frequency_penalty, s.presence_penalty))  # fmt: skip
    tail = tail_chain(L, s)
    while L.llama_sampler_chain_n(tail):  # move the tail's samplers over, in order
        L.llama_sampler_chain_add(chain, L.llama_sampler_chain_remove(tail, 0))
    L.llama_sampler_free(tail)
    return chain


class GreedySampler:
    """Plain greedy decoding: the argmax, as llama.cpp's greedy sampler (the first of equal maxima).

    Given ``ctx``, llama.cpp's own greedy sampler is set on it as a backend sampler
    (``llama_set_sampler``): the argmax runs in the model's graph on the device that holds the
    output layer, and the decode hands back the token instead of copying the vocabulary's logits
    to the host for an argmax here — the same token (llama.cpp's greedy on either side), ~0.1 ms
    less host work a token. The answer's first token comes from the prompt, decoded before the
    sampler was set: that one is the host argmax."""

    def __init__(self, L: Any, n_vocab: int, *, ctx: Any = None) -> None:
        self.L, self.logits = L, LogitsView(L, n_vocab)
        self.ctx, self.backend = ctx, None
        if ctx is not None:
            chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            if L.llama_set_sampler(ctx, 0, chain):
                self.backend = chain
            else:  # this build cannot run it in the graph: the host argmax
                L.llama_sampler_free(chain)

    def sample(self, ctx: Any) -> int:
        if self.backend is not None:
            token = int(self.L.llama_get_sampled_token_ith(ctx, -1))
            if token >= 0:  # LLAMA_TOKEN_NULL (-1): these logits were not sampled in the graph
                return token
        return int(np.argmax(self.logits(ctx)))

    def close(self) -> None:
        if self.backend is not None:
            self.L.llama_set_sampler(self.ctx, 0, None)  # the next prompt's logits come back
            self.L.llama_sampler_free(self.backend)
            self.backend = None


class ChainSampler:
    """llama.cpp's chain over the whole vocabulary: settings the fast path does not cover."""

    def __init__(self, L: Any, n_vocab: int, s: Sampling) -> None:
        self.L = L
        self.chain = full_chain(L, n_vocab, s)

    def sample(self, ctx: Any) -> int:
        return int(self.L.llama_sampler_sample(self.chain, ctx, -1))

    def close(self) -> None:
        if self.chain is not None:
            self.L.llama_sampler_free(self.chain)
            self.chain = None


class RepeatPenalty:
    """llama.cpp's penalties (``llama_sampler_penalties``): the last ``last_n`` sampled tokens; a
    logit of one of them is divided by the repeat penalty when positive, multiplied when not, then
    lowered by count × the frequency penalty plus the presence penalty (float32, as in C).

    The distinct tokens of the history and their counts are kept in two int32 arrays (``ids``,
    ``counts``, the first ``n`` entries), updated in place as tokens come and go, so the C helper
    and numpy read them as they are."""

    def __init__(self, penalty: float, last_n: int, frequency: float = 0.0, presence: float = 0.0) -> None:
        self.penalty = np.float32(penalty)
        self.frequency, self.presence = np.float32(frequency), np.float32(presence)
        size = max(last_n, 0)
        self.history: deque[int] = deque(maxlen=size)
        self.ids = np.zeros(max(size, 1), dtype=np.int32)
        self.counts = np.zeros(max(size, 1), dtype=np.int32)
        self.n = 0
        self._slot: dict[int, int] = {}
        self.active = (penalty != 1.0 or frequency != 0.0 or presence != 0.0) and size > 0

    def accept(self, token: int) -> None:
        if not self.active:
            return
        if len(self.history) == self.history.maxlen:
            self._drop(self.history[0])
        self.history.append(token)
        slot = self._slot.get(token)
        if slot is None:
            slot = self._slot[token] = self.n
            self.ids[slot], self.counts[slot] = token, 0
            self.n += 1
        self.counts[slot] += 1

    def _drop(self, token: int) -> None:
        slot = self._slot[token]
        self.counts[slot] -= 1
        if self.counts[slot]:
            return
        del self._slot[token]
        self.n -= 1
        if slot != self.n:  # the last entry fills the hole
            last = int(self.ids[self.n])
            self.ids[slot], self.counts[slot] = last, self.counts[self.n]
            self._slot[last] = slot

    def apply(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Penalise ``logits`` in place; returns what to put back with :meth:`restore`."""
        if not self.active or not self.n:
            return None
        ids = self.ids[: self.n]
        saved = logits[ids]
        penalised = np.where(saved <= 0, saved * self.penalty, saved / self.penalty)
        if self.frequency or self.presence:
            penalised -= self.counts[: self.n].astype(np.float32) * self.frequency + self.presence
        logits[ids] = penalised
        return ids, saved

    @staticmethod
    def restore(logits: np.ndarray, saved: tuple[np.ndarray, np.ndarray] | None) -> None:
        if saved is not None:
            logits[saved[0]] = saved[1]


def top_candidates(logits: np.ndarray, k: int, block: int = BLOCK) -> np.ndarray:
    """The ids, in token order, of a superset of the ``k`` largest logits: every logit ≥ the k-th
    largest maximum of the blocks of ``block`` consecutive tokens (see the module's docstring).
    Every logit that is among the top k is in it, whatever the ties. topk.c does the same in C."""
    n = logits.shape[0]
    nb = -(-n // block)
    if nb <= k:  # a small vocabulary: the whole of it
        return np.arange(n)
    full = n // block
    grid = logits[: full * block].reshape(full, block)
    maxima = grid.max(axis=1)
    if full < nb:  # the last, shorter block
        maxima = np.append(maxima, logits[full * block :].max())
    t = np.partition(maxima, nb - k)[nb - k]
    rows = np.flatnonzero(maxima[:full] >= t)
    r, c = np.nonzero(grid[rows] >= t)
    ids = rows[r] * block + c
    if full < nb and maxima[full] >= t:
        ids = np.concatenate((ids, np.flatnonzero(logits[full * block :] >= t) + full * block))
    return ids


TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data, llama.h


class TopKSampler:
    """The penalty and the top-k cut here, the rest in llama.cpp's chain (module docstring). The
    cut runs in C (app/engine/native/topk.c) where the helper could be found or built, else in
    numpy; both give the same candidates in the same order."""

    def __init__(self, L: Any, n_vocab: int, s: Sampling, *, use_native: bool = True) -> None:
        self.L, self.logits = L, LogitsView(L, n_vocab)
        self.k = s.top_k if s.temperature > 0 else 1
        self.penalty = p = RepeatPenalty(
            s.repeat_penalty, s.repeat_last_n, s.frequency_penalty, s.presence_penalty
        )
        self.chain = tail_chain(L, s) if self.k > 1 else None  # temperature 0: an argmax, no chain
        self.native = native.library() if use_native and self.k > 1 else None
        # the C helper's view of the penalty: the history's ids and counts (updated in place), the
        # three factors, and room for the logits it penalises and puts back
        self._saved = np.zeros(p.ids.shape, dtype=np.float32)
        self._c_history = (p.ids.ctypes.data_as(native.c_int32_p), p.counts.ctypes.data_as(native.c_int32_p))
        self._c_factors = (float(p.penalty), float(p.frequency), float(p.presence),
                           self._saved.ctypes.data_as(native.c_float_p))  # fmt: skip
        self._capacity = 0
        self._grow(max(4 * self.k, 256))

    def _grow(self, capacity: int) -> None:
        self._buf = (self.L.llama_token_data * capacity)()
        view = np.frombuffer(self._buf, dtype=TOKEN_DATA)
        self._ids, self._vals = view["id"], view["logit"]
        self._array = self.L.llama_token_data_array(
            data=ctypes.cast(self._buf, self.L.llama_token_data_p), size=0, selected=-1, sorted=False
        )
        self._capacity = capacity

    def sample(self, ctx: Any) -> int:
        token = self.pick(self.logits(ctx))
        self.penalty.accept(token)
        return token

    def pick(self, logits: np.ndarray) -> int:
        """The token the chain draws from ``logits`` (float32, contiguous, changed only while this
        runs), without adding it to the penalty history."""
        if self.native is not None:
            return self._select(self.native_candidates(logits))
        saved = self.penalty.apply(logits)
        try:
            if self.k == 1:  # temperature 0: greedy over the penalised logits
                return int(np.argmax(logits))
            ids = top_candidates(logits, self.k)
            m = ids.shape[0]
            if m > self._capacity:
                self._grow(2 * m)
            self._ids[:m] = ids
            np.take(logits, ids, out=self._vals[:m])
            return self._select(m)
        finally:
            self.penalty.restore(logits, saved)

    def native_candidates(self, logits: np.ndarray) -> int:
        """The C helper's candidates (the penalty applied) into the candidate buffer; their count."""
        assert self.native is not None and logits.dtype == np.float32 and logits.flags.c_contiguous
        p = self.penalty
        n_pen = p.n if p.active else 0
        ptr = logits.ctypes.data_as(native.c_float_p)
        while True:
            m = self.native.candidates(ptr, logits.shape[0], self.k, *self._c_history, n_pen, *self._c_factors,
                                       ctypes.addressof(self._buf), self._capacity)  # fmt: skip
            if m < 0:
                raise MemoryError("the sampler's C helper could not allocate its block maxima")
            if m <= self._capacity:
                return m
            self._grow(m)

    def _select(self, m: int) -> int:
        """llama.cpp's tail chain over the first ``m`` entries of the candidate buffer."""
        arr = self._array
        arr.size, arr.selected, arr.sorted = m, -1, False
        self.L.llama_sampler_apply(self.chain, ctypes.byref(arr))
        return int(self._buf[arr.selected].id)  # the chain sorted and cut the array in place

    def close(self) -> None:
        if self.chain is not None:
            self.L.llama_sampler_free(self.chain)
            self.chain = None

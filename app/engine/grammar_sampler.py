"""Sampling under a grammar: JSON that must parse, a tool call that must match its schema.

llama.cpp's grammar sampler tests a candidate token's text against the grammar's parse stacks;
over a whole vocabulary that is milliseconds a token. So, as llama-server does
(``common_sampler_sample`` in the vendored sources, ``grammar_first`` false): the token is drawn as
without a grammar (:class:`~app.engine.sampler.TopKSampler`: penalties, top-k, the chain), then
checked alone; only when the grammar rejects it is the whole vocabulary masked by the grammar and
the draw made again from what is left. The draws are then llama-server's for the same settings,
and most tokens cost one check. Runs only inside the model process.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import replace
from typing import Any

import numpy as np

from app.engine.protocol import Sampling
from app.engine.sampler import TOKEN_DATA, LogitsView, TopKSampler


class GrammarError(ValueError):
    """The grammar text does not parse (llama.cpp logged why)."""


class GrammarSampler:
    def __init__(self, L: Any, vocab: Any, n_vocab: int, s: Sampling) -> None:
        self.L, self.vocab, self.n_vocab = L, vocab, n_vocab
        self.grammar = L.llama_sampler_init_grammar(vocab, s.grammar.encode(), b"root")
        if not self.grammar:
            raise GrammarError("the grammar does not parse")
        top_k = s.top_k if 0 < s.top_k < n_vocab else n_vocab  # top-k off: every token is a candidate
        self.inner = TopKSampler(L, n_vocab, replace(s, top_k=top_k))
        self.logits = LogitsView(L, n_vocab)
        self._one = (L.llama_token_data * 1)()
        self._one_array = L.llama_token_data_array(
            data=ctypes.cast(self._one, L.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        self._all: Any = None  # the whole vocabulary, made when a token is first rejected
        self.rejected = 0  # tokens the grammar refused (each cost a masked second draw)

    def sample(self, ctx: Any) -> int:
        return self.choose(self.logits(ctx))

    def choose(self, logits: np.ndarray) -> int:
        """The token for ``logits`` (float32, left as they were); it joins the penalty history and
        advances the grammar."""
        token = self.inner.pick(logits)
        if not self._allowed(token, float(logits[token])):
            self.rejected += 1
            masked = self._masked(logits)
            if not np.isfinite(masked).any():  # the grammar admits nothing more: end the answer
                return int(self.L.llama_vocab_eos(self.vocab))
            token = self.inner.pick(masked)
        self.inner.penalty.accept(token)
        if not self.L.llama_vocab_is_eog(self.vocab, token):  # an end of generation ends the stream
            self.L.llama_sampler_accept(self.grammar, token)
        return token

    def _allowed(self, token: int, logit: float) -> bool:
        one, arr = self._one[0], self._one_array
        one.id, one.logit, one.p = token, logit, 0.0
        arr.size, arr.selected, arr.sorted = 1, -1, False
        self.L.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return not math.isinf(self._one[0].logit)

    def _masked(self, logits: np.ndarray) -> np.ndarray:
        """A copy of ``logits`` with every token the grammar refuses at -inf."""
        if self._all is None:
            buf = (self.L.llama_token_data * self.n_vocab)()
            view = np.frombuffer(buf, dtype=TOKEN_DATA)
            arr = self.L.llama_token_data_array(
                data=ctypes.cast(buf, self.L.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False
            )
            self._all = (buf, view, arr)
        _buf, view, arr = self._all
        view["id"] = np.arange(self.n_vocab, dtype=np.int32)
        view["logit"] = logits
        arr.size, arr.selected, arr.sorted = self.n_vocab, -1, False
        self.L.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        return np.array(view["logit"], dtype=np.float32)  # contiguous: the top-k grid reshapes it

    def close(self) -> None:
        self.inner.close()
        if self.grammar is not None:
            self.L.llama_sampler_free(self.grammar)
            self.grammar = None

"""Sampling under a grammar (JSON mode, tool calls) draws what llama-server draws (issue 18).

app/engine/grammar_sampler.py draws as without a grammar, checks the one token, and only when the
grammar rejects it draws again from the grammar-masked vocabulary (llama.cpp's
``common_sampler_sample``). So a token's probability is ``q(t)·[t allowed] + R·m(t)``: q the chain's
distribution, R the chance q's draw is rejected, m the chain's distribution over the masked logits.
10,000 draws on SmolLM2's real vocabulary are held against that by a chi-squared test; a grammar
that admits every token changes no draw at all.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.engine import protocol as P
from app.engine.grammar_sampler import GrammarError, GrammarSampler
from app.engine.sampler import TopKSampler
from tests.sampling_check import chain_probabilities, chi2, chi2_critical

L: Any = pytest.importorskip("llama_cpp")

ANSWERS = 'root ::= ("yes" | "no" | "maybe") "."'


@pytest.fixture(scope="module")
def vocab(smollm2_path: Path) -> Iterator[tuple[Any, int]]:
    mp = L.llama_model_default_params()
    mp.vocab_only = True
    model = L.llama_model_load_from_file(str(smollm2_path).encode(), mp)
    assert model
    v = L.llama_model_get_vocab(model)
    yield v, int(L.llama_vocab_n_tokens(v))
    L.llama_model_free(model)


def _token(vocab: Any, text: str) -> int:
    buf = (L.llama_token * 8)()
    n = L.llama_tokenize(vocab, text.encode(), len(text.encode()), buf, 8, False, False)
    assert n == 1, text
    return int(buf[0])


def _logits(vocab: Any, n_vocab: int, seed: int, favoured: dict[str, float]) -> np.ndarray:
    """A model-like next-token distribution over ordinary tokens (ids past the special ones), with
    the ``favoured`` words raised to the given logits."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_vocab).astype(np.float32) - 2.0
    strong = rng.choice(np.arange(1000, n_vocab), 10, replace=False)
    x[strong] += rng.uniform(5, 7, 10).astype(np.float32)
    x[:100] = -30.0  # the special tokens never compete here
    for word, logit in favoured.items():
        x[_token(vocab, word)] = logit
    return x


def _masked(vocab: Any, logits: np.ndarray, grammar: str) -> np.ndarray:
    """``logits`` with what ``grammar`` refuses as its first token at -inf (llama.cpp's own apply)."""
    g = L.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    n = logits.shape[0]
    data = (L.llama_token_data * n)()
    view = np.frombuffer(data, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
    view["id"], view["logit"] = np.arange(n), logits
    arr = L.llama_token_data_array(
        data=ctypes.cast(data, L.llama_token_data_p), size=n, selected=-1, sorted=False
    )
    L.llama_sampler_apply(g, ctypes.byref(arr))
    L.llama_sampler_free(g)
    return np.array(view["logit"], dtype=np.float32)


def test_draws_under_a_grammar_follow_llama_servers_rule(vocab: tuple[Any, int]) -> None:
    v, n_vocab = vocab
    # "yes" competes with the strong ordinary tokens (about half the draws are admitted at once);
    # "no" and "maybe" are weaker: they matter after a rejection
    logits = _logits(v, n_vocab, 3, {"yes": 6.5, "no": 4.0, "maybe": 3.0})
    s = P.Sampling(temperature=1.0, top_k=40, top_p=0.95, min_p=0.0, repeat_penalty=1.0, grammar=ANSWERS)
    n_draws = 10_000
    draws = Counter()
    for i in range(n_draws):
        sampler = GrammarSampler(L, v, n_vocab, replace(s, seed=i))
        try:
            draws[sampler.choose(logits)] += 1
        finally:
            sampler.close()
    masked = _masked(v, logits, ANSWERS)
    allowed = np.isfinite(masked)
    plain = replace(s, grammar="")
    q = chain_probabilities(L, plain, [], logits)
    m = chain_probabilities(L, plain, [], masked)
    rejected = sum(p for t, p in q.items() if not allowed[t])
    assert 0.2 < rejected < 0.8  # both ways of drawing are exercised
    expected: dict[int, float] = {}
    for t, p in q.items():
        if allowed[t]:
            expected[t] = expected.get(t, 0.0) + p
    for t, p in m.items():
        expected[t] = expected.get(t, 0.0) + rejected * p
    assert set(draws) <= {t for t in expected if expected[t] > 0}
    assert all(allowed[t] for t in draws)  # never a token the grammar refuses
    stat, df = chi2(draws, expected, n_draws)
    assert df >= 1 and stat < chi2_critical(df), (stat, df)


def test_a_grammar_that_admits_everything_changes_no_draw(vocab: tuple[Any, int]) -> None:
    v, n_vocab = vocab
    logits = _logits(v, n_vocab, 5, {})
    s = P.Sampling(temperature=0.9, top_k=40, repeat_penalty=1.2, repeat_last_n=16, seed=99)
    ours = GrammarSampler(L, v, n_vocab, replace(s, grammar="root ::= [^\\x00]*"))
    plain = TopKSampler(L, n_vocab, s)
    try:
        for _ in range(300):
            a = ours.choose(logits)
            b = plain.pick(logits)
            plain.penalty.accept(b)
            assert a == b
        assert ours.rejected == 0
    finally:
        ours.close()
        plain.close()


def test_a_grammar_that_does_not_parse_is_refused(vocab: tuple[Any, int]) -> None:
    v, n_vocab = vocab
    with pytest.raises(GrammarError):
        GrammarSampler(L, v, n_vocab, P.Sampling(grammar="root ::= ("))

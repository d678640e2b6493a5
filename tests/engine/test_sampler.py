"""The fast sampler draws from llama.cpp's own distribution (issue 15).

app/engine/sampler.py does the repeat penalty and the top-k cut itself — in C
(app/engine/native/topk.c) or, without a C compiler, in numpy; every test here runs both — and hands
the candidates to llama.cpp's chain. Here it is held against llama.cpp's whole chain on the whole vocabulary:
draw by draw with the same seed (the same mt19937 stream must pick the same token), by a
chi-squared test of 10,000 draws per setting against the probabilities llama.cpp's chain
assigns, and on a real model's logits, token by token.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.engine import native
from app.engine import protocol as P
from app.engine.sampler import (
    ChainSampler,
    GreedySampler,
    TopKSampler,
    full_chain,
    make_sampler,
    top_candidates,
)
from tests import models
from tests.sampling_check import apply_to_vocabulary, chain_probabilities, chi2, chi2_critical

L: Any = pytest.importorskip("llama_cpp")
PATHS = ["C", "numpy"]  # the sampler's two ways to cut the vocabulary


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    if request.param == "C" and native.library() is None:
        pytest.skip(f"the C helper is not available here: {native.why_not()}")
    return str(request.param)


N_DRAWS = 10_000
SETTINGS = {
    "chat defaults": P.Sampling(),
    "top-k only": P.Sampling(temperature=1.0, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.0),
    "wide top-k, top-p": P.Sampling(temperature=1.3, top_k=100, top_p=0.9, min_p=0.0, repeat_penalty=1.0),
    "min-p, strong short penalty": P.Sampling(
        temperature=0.8, top_k=20, top_p=1.0, min_p=0.1, repeat_penalty=1.3, repeat_last_n=16
    ),
    # OpenAI's frequency and presence penalties, as the server passes them
    "frequency and presence": P.Sampling(
        temperature=0.9, top_k=40, repeat_penalty=1.0, frequency_penalty=0.6, presence_penalty=0.4
    ),
}


def _logits(n_vocab: int, seed: int) -> np.ndarray:
    """A next-token distribution shaped like a model's: a long tail, a few strong candidates,
    negative and positive logits (the penalty treats them differently)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_vocab).astype(np.float32) * 2.5 - 1.0
    n_strong = min(12, n_vocab)
    strong = rng.choice(n_vocab, n_strong, replace=False)
    x[strong] += rng.uniform(6, 9, n_strong).astype(np.float32)
    return x


def _history(logits: np.ndarray) -> list[int]:
    """Recent tokens that include the strongest candidates, with repeats, longer than 16."""
    top = [int(i) for i in np.argsort(-logits)[:6]]
    return [top[0], 11, top[2], top[0], 5, top[4], 7, *range(100, 120), top[1]]


def _chain_pick(chain: Any, logits: np.ndarray) -> int:
    """llama.cpp's chain over the whole vocabulary, as ``llama_sampler_sample`` runs it."""
    kept, selected = apply_to_vocabulary(L, chain, logits)
    return int(kept["id"][selected])


@pytest.mark.parametrize("n_vocab", [262_144, 151_936, 32_000, 1000, 130, 7])
def test_top_candidates_hold_every_top_k_logit(n_vocab: int) -> None:
    rng = np.random.default_rng(n_vocab)
    cases = {
        "model-like": _logits(n_vocab, 1),
        "many ties": rng.integers(0, 4, n_vocab).astype(np.float32),
        "ascending": np.arange(n_vocab, dtype=np.float32),
        "descending": -np.arange(n_vocab, dtype=np.float32),
        "constant": np.zeros(n_vocab, np.float32),
        "masked": np.where(rng.random(n_vocab) < 0.9, -np.inf, rng.standard_normal(n_vocab)).astype(
            np.float32
        ),
    }
    for name, x in cases.items():
        for k in (1, 5, 40, 100):
            ids = top_candidates(x, k)
            assert len(set(ids.tolist())) == len(ids), name
            kth = np.sort(x)[::-1][min(k, n_vocab) - 1]
            assert set(np.flatnonzero(x > kth)) <= set(ids.tolist()), (name, k)
            assert np.count_nonzero(x[ids] >= kth) >= min(k, n_vocab), (name, k)


@pytest.mark.parametrize("name", SETTINGS)
def test_draws_are_llama_cpps_draw_for_draw_and_in_distribution(name: str, path: str) -> None:
    s = replace(SETTINGS[name], seed=20261203)
    logits = _logits(32_000, 7)
    history = _history(logits)
    ours = make_sampler_for(s, 32_000, path)
    reference = full_chain(L, 32_000, s)
    for t in history:
        ours.penalty.accept(t)
        L.llama_sampler_accept(reference, t)
    try:
        before = logits.copy()
        draws = [ours.pick(logits) for _ in range(N_DRAWS)]
        assert np.array_equal(logits, before), "the penalty must leave llama.cpp's logits as they were"
        expected = [_chain_pick(reference, logits) for _ in range(N_DRAWS)]
        assert draws == expected  # the same seed, the same mt19937 stream, the same token
        probs = chain_probabilities(L, s, history, logits)
        assert set(draws) <= set(probs)
        stat, df = chi2(Counter(draws), probs, N_DRAWS)
        assert df >= 1
        assert stat < chi2_critical(df), (stat, df)
    finally:
        ours.close()
        L.llama_sampler_free(reference)


def _in_lockstep(s: P.Sampling, logits: np.ndarray, n: int, path: str) -> list[int]:
    """``n`` draws from the fast sampler and llama.cpp's whole chain, each accepted by both, which
    must agree every time; the fast sampler's penalty history at the end."""
    ours = make_sampler_for(s, logits.shape[0], path)
    reference = full_chain(L, logits.shape[0], s)
    try:
        for _ in range(n):
            a, b = ours.pick(logits), _chain_pick(reference, logits)
            assert a == b
            ours.penalty.accept(a)
            L.llama_sampler_accept(reference, b)
        return list(ours.penalty.history)
    finally:
        ours.close()
        L.llama_sampler_free(reference)


def test_penalty_history_moves_as_llama_cpps_does(path: str) -> None:
    """Tokens that join the history change what is penalised; 400 draws, each accepted, with a
    16-token window that wraps many times."""
    s = replace(SETTINGS["min-p, strong short penalty"], seed=5)
    logits = _logits(32_000, 3)
    history = _in_lockstep(s, logits, 400, path)
    assert len(history) == 16


def test_temperature_zero_with_a_penalty_is_greedy_over_penalised_logits(path: str) -> None:
    s = P.Sampling(temperature=0.0, repeat_penalty=1.5, repeat_last_n=8)
    logits = _logits(32_000, 11)
    history = _in_lockstep(s, logits, 50, path)
    assert len(set(history)) > 1  # the penalty moved greedy off its first choice


def make_sampler_for(s: P.Sampling, n_vocab: int, path: str) -> TopKSampler:
    sampler = TopKSampler(L, n_vocab, s, use_native=path == "C")
    assert sampler.k == (s.top_k if s.temperature > 0 else 1)
    assert (sampler.native is not None) == (path == "C" and sampler.k > 1)
    return sampler


class _Vocab:
    """Enough of a llama_vocab for make_sampler's choice."""


def test_settings_pick_the_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(L, "llama_vocab_n_tokens", lambda vocab: 32_000)
    chosen = {
        "greedy": make_sampler(L, _Vocab(), P.Sampling(temperature=0.0, repeat_penalty=1.0)),
        "defaults": make_sampler(L, _Vocab(), P.Sampling()),
        "top-k off": make_sampler(L, _Vocab(), P.Sampling(top_k=0)),
        "top-k beyond the vocabulary": make_sampler(L, _Vocab(), P.Sampling(top_k=50_000)),
    }
    try:
        assert isinstance(chosen["greedy"], GreedySampler)
        assert isinstance(chosen["defaults"], TopKSampler)
        assert isinstance(chosen["top-k off"], ChainSampler)
        assert isinstance(chosen["top-k beyond the vocabulary"], ChainSampler)
    finally:
        for sampler in chosen.values():
            sampler.close()


def test_real_model_token_by_token_and_seeded(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's own logits, 48 tokens: the fast sampler and llama.cpp's whole chain, both seeded
    alike, pick the same token at every step; the same seed again gives the same answer."""
    from app.engine.llama_session import LlamaSession
    from app.engine.token_stream import GenStats

    session = LlamaSession()
    session.load(P.Load(model_path=str(models.smollm2_path()), n_ctx=512, n_gpu_layers=0), lambda f: None)
    try:
        s = P.Sampling(seed=77, max_tokens=48)
        prompt = "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"
        assert session._evaluate_prompt(session.tokenize(prompt), GenStats())
        n_vocab = int(L.llama_vocab_n_tokens(session.vocab))
        if path == "numpy":  # make_sampler, as the engine calls it, without the C helper
            monkeypatch.setattr(native, "library", lambda: None)
        ours, reference = make_sampler(L, session.vocab, s), full_chain(L, n_vocab, s)
        assert isinstance(ours, TopKSampler) and (ours.native is not None) == (path == "C")
        picked = []
        try:
            for _ in range(48):
                a = ours.sample(session.ctx)
                b = int(L.llama_sampler_sample(reference, session.ctx, -1))
                assert a == b
                picked.append(a)
                assert session._decode([a]) == 0
        finally:
            ours.close()
            L.llama_sampler_free(reference)
        assert len(set(picked)) > 5

        def answer() -> str:
            return "".join(p.text for p in session.generate(prompt, s, GenStats(), flush_s=0.0))

        first = answer()
        assert first and answer() == first
    finally:
        session.unload()


def test_greedy_in_the_graph_is_the_host_argmax() -> None:
    """Greedy as a backend sampler (what the engine sets when the output layer is on a GPU; here on
    the CPU backend, the same code path in llama.cpp): the token that comes back is the argmax of
    the logits, token after token; once closed, the logits come back for the next sampler."""
    from app.engine.llama_session import LlamaSession
    from app.engine.token_stream import GenStats

    session = LlamaSession()
    session.load(P.Load(model_path=str(models.smollm2_path()), n_ctx=256, n_gpu_layers=0), lambda f: None)
    try:
        prompt = session.tokenize("<|im_start|>user\nName three rivers.<|im_end|>\n<|im_start|>assistant\n")

        def run(ctx: Any) -> list[int]:
            session.kv_tokens = []
            assert session._evaluate_prompt(prompt, GenStats())
            greedy = GreedySampler(L, int(L.llama_vocab_n_tokens(session.vocab)), ctx=ctx)
            assert (greedy.backend is not None) == (ctx is not None)
            out = []
            try:
                for i in range(24):
                    if ctx is not None:  # the prompt's logits were not sampled in the graph, the rest were
                        assert (int(L.llama_get_sampled_token_ith(ctx, -1)) >= 0) == (i > 0)
                    out.append(greedy.sample(session.ctx))
                    assert session._decode([out[-1]]) == 0
            finally:
                greedy.close()
            return out

        on_host = run(None)
        assert run(session.ctx) == on_host
        assert run(None) == on_host  # the backend sampler is gone: host logits again
    finally:
        session.unload()

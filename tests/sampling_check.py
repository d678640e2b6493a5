"""Checks that a sampler draws from llama.cpp's distribution, shared by tests/engine/test_sampler.py
and tests/gpu/speed_proof.py: the probabilities llama.cpp's chain assigns to given logits,
Pearson's chi-squared test of draws against them, and draws of llama.cpp's backend sampling at
one position (which the engine does not use: it fails this check)."""

from __future__ import annotations

import ctypes
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np

from app.engine import protocol as P
from app.engine.sampler import TOKEN_DATA, full_chain


def apply_to_vocabulary(L: Any, chain: Any, logits: np.ndarray) -> tuple[np.ndarray, int]:
    """``chain`` over a candidate array of the whole vocabulary, as ``llama_sampler_sample`` runs
    it: the candidates the chain kept (in its order) and the index it selected (-1: none)."""
    n = logits.shape[0]
    data = (L.llama_token_data * n)()
    view = np.frombuffer(data, dtype=TOKEN_DATA)
    view["id"], view["logit"] = np.arange(n), logits
    arr = L.llama_token_data_array(
        data=ctypes.cast(data, L.llama_token_data_p), size=n, selected=-1, sorted=False
    )
    L.llama_sampler_apply(chain, ctypes.byref(arr))
    return view[: arr.size].copy(), int(arr.selected)


def chain_probabilities(L: Any, s: P.Sampling, history: list[int], logits: np.ndarray) -> dict[int, float]:
    """What llama.cpp's chain keeps and with which probability: the chain without its final
    draw, then the softmax the draw uses."""
    without_dist = replace(s, seed=0)
    chain = full_chain(L, logits.shape[0], without_dist)
    L.llama_sampler_free(L.llama_sampler_chain_remove(chain, L.llama_sampler_chain_n(chain) - 1))
    for t in history:
        L.llama_sampler_accept(chain, t)
    kept, _ = apply_to_vocabulary(L, chain, logits)
    L.llama_sampler_free(chain)
    w = np.exp(kept["logit"].astype(np.float64) - kept["logit"].max())
    return {int(i): float(p) for i, p in zip(kept["id"], w / w.sum(), strict=True)}


def chi2_critical(df: int, z: float = 3.719) -> float:
    """The chi-squared value exceeded with probability ~1e-4 (Wilson-Hilferty; z of 1e-4)."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def chi2(counts: Counter[int], probs: dict[int, float], n: int) -> tuple[float, int]:
    """Pearson's statistic with bins of expected count < 5 pooled; (statistic, degrees of freedom)."""
    stat, pooled_obs, pooled_exp, bins = 0.0, 0, 0.0, 0
    for tok, p in probs.items():
        exp = p * n
        if exp < 5:
            pooled_obs += counts.get(tok, 0)
            pooled_exp += exp
            continue
        stat += (counts.get(tok, 0) - exp) ** 2 / exp
        bins += 1
    if pooled_exp >= 5:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        bins += 1
    return stat, bins - 1


def backend_draws(L: Any, session: Any, prompt_tokens: list[int], s: P.Sampling, n: int) -> list[int]:
    """``n`` draws of llama.cpp's backend sampling (the chain attached to the context with
    ``llama_set_sampler``, run inside the model's graph) at one position: the last prompt token is
    decoded again for each draw, so every draw sees the same logits."""
    chain = full_chain(L, int(L.llama_vocab_n_tokens(session.vocab)), s)
    if not L.llama_set_sampler(session.ctx, 0, chain):
        L.llama_sampler_free(chain)
        raise RuntimeError("llama.cpp would not attach the chain to the context")
    memory = L.llama_get_memory(session.ctx)
    pos = len(prompt_tokens) - 1
    draws = []
    try:
        for _ in range(n):
            L.llama_memory_seq_rm(memory, 0, pos, -1)
            if session._decode(prompt_tokens[-1:]) != 0:
                raise RuntimeError("decode failed")
            draws.append(int(L.llama_sampler_sample(chain, session.ctx, -1)))
    finally:
        L.llama_set_sampler(session.ctx, 0, None)
        L.llama_sampler_free(chain)
    return draws

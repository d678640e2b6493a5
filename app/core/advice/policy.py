"""The advisor's rules of thumb, in one place: what counts as a comfortable speed, as "the same"
quality and as "good" quality. The pick (:mod:`app.core.advice.recommend`) and the words that
explain it (:mod:`app.core.advice.reasons`) both read them, so they cannot drift apart."""

from __future__ import annotations

from app.core.advice.speed_words import shown_tok_s

# Comfortable reading speed: people read 4-7 words/s, about 5-9 tokens/s.
DEFAULT_MIN_TOK_S = 5.0
# Quality differences below this mean KLD are invisible in use (Q8_0 vs F16 is 0.00136):
# prefer the smaller file then.
SAME_QUALITY_KLD = 0.0015
# "good" in app.core.advice.quality's bands (Q4_K_M: 0.031): the least we settle for to gain speed.
GOOD_KLD = 0.05


def comfortable(tok_s: float, min_tok_s: float = DEFAULT_MIN_TOK_S) -> bool:
    """Whether a speed reaches ``min_tok_s`` as the user sees it (rounded as shown)."""
    return shown_tok_s(tok_s) >= min_tok_s

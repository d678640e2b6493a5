"""One answer's numbers in words — tokens, speed, time to first token — from its stored timings.

``first_token_ms`` is the chat's own measurement, the one the window shows live while the answer
streams: from the start of the turn (history, template, prompt) to the first token. Answers stored
before it was kept fall back to the model process's ``ttft_ms``. Unknown is "—", never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNKNOWN = "—"


def first_token_ms(timings: Mapping[str, Any] | None) -> float | None:
    """The answer's time to first token in ms, or None when it was not measured."""
    if not timings:
        return None
    value = timings.get("first_token_ms", timings.get("ttft_ms"))
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(timings: Mapping[str, Any], key: str) -> float | None:
    value = timings.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def answer_stats(timings: Mapping[str, Any] | None) -> str:
    """ "24 tokens · 41.5 tok/s · first token 120 ms"; "" when nothing was measured."""
    if not timings:
        return ""
    n, speed, first = _number(timings, "n_gen_tokens"), _number(timings, "gen_tok_s"), first_token_ms(timings)
    if n is None and speed is None and first is None:
        return ""
    tokens = UNKNOWN if n is None else f"{int(n):,} token{'s' if n != 1 else ''}"
    rate = UNKNOWN if speed is None else f"{speed:.1f}"
    wait = UNKNOWN if first is None else f"{first:,.0f}"
    return f"{tokens} · {rate} tok/s · first token {wait} ms"

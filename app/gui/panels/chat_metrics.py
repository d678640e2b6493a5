"""The numbers the status bar shows for the model process: speed, latency, memory — measured next
to the advisor's prediction. Qt-free; the panel feeds it engine events and reads a snapshot.

The time to first token is one measurement from start to end: the chat session's (from the start
of the turn to the first token), which it also stores with the answer — shown as soon as the first
token arrives and never replaced. The speed is measured here while the answer streams; once it
ends, the model process's own figures from ``Done`` replace it.
"""

from __future__ import annotations

import time
from typing import Any

from app.core.units import format_bytes

UNKNOWN = "—"  # how a figure that could not be measured is shown (house style: never 0)
MIN_SPEED_WINDOW_S = 0.2  # a shorter stretch of tokens says little about the speed


class AnswerMeter:
    def __init__(self) -> None:
        self.last: dict[str, float | None] = {}  # the last finished answer, as the model process measured it
        self.tokens = 0  # tokens of the answer in progress
        self.first_token_ms: float | None = None  # the answer in progress's (ChatSession.first_token_ms)
        self._first_t = 0.0
        self._running = False

    def start(self) -> None:
        self._first_t, self.tokens, self._running, self.first_token_ms = 0.0, 0, True, None

    def first_token(self, ms: float) -> None:
        """The session measured the answer's time to first token (it stores the same figure)."""
        self.first_token_ms = ms

    def add(self, n_tokens: int) -> None:
        if not self._first_t:
            self._first_t = time.monotonic()
        self.tokens += n_tokens

    def finish(self, done: Any = None) -> None:
        """The answer ended; ``done`` (a protocol Done) carries the process's own timings."""
        self._running = False
        if done is not None:
            self.last = {
                "gen_tok_s": done.gen_tok_s,
                "ttft_ms": self.first_token_ms,  # the figure shown live, and stored with the answer
                "prompt_tok_s": done.prompt_tok_s,
            }

    def snapshot(self, memory: Any, predicted: dict[str, int]) -> dict[str, Any]:
        """The ``ctx.engine_metrics`` dict; ``memory`` is a MemorySample (or None).

        Unknown is not zero: a figure that could not be measured, or was not predicted, is None.
        ``vram_bytes`` is there only when the machine has a GPU to ask (None: not attributable).
        """
        m: dict[str, Any] = dict(self.last)
        if self._running and self._first_t:
            m["ttft_ms"] = self.first_token_ms
            elapsed = time.monotonic() - self._first_t
            if elapsed > MIN_SPEED_WINDOW_S:
                m["gen_tok_s"] = self.tokens / elapsed
        if memory is not None:
            m["rss_bytes"] = memory.child_rss_bytes
            if memory.device_vram_used_bytes is not None or memory.child_vram_bytes is not None:
                m["vram_bytes"] = memory.child_vram_bytes
        m["predicted_ram_bytes"] = predicted.get("ram_bytes")
        m["predicted_vram_bytes"] = predicted.get("vram_bytes")
        return m


def _bytes(n: int | None) -> str:
    return format_bytes(n) if n is not None else UNKNOWN


def status_text(m: dict[str, Any]) -> str:
    """The status bar's line for a :meth:`AnswerMeter.snapshot`; unknown figures show as "—"."""
    parts = []
    if m.get("gen_tok_s") is not None:
        parts.append(f"{m['gen_tok_s']:.1f} tok/s")
    if m.get("ttft_ms") is not None:
        parts.append(f"first token {m['ttft_ms']:.0f} ms")
    for key, label, pred in (("rss_bytes", "RAM", "predicted_ram_bytes"), ("vram_bytes", "VRAM", "predicted_vram_bytes")):  # fmt: skip
        if key in m:
            predicted = f" (predicted {format_bytes(m[pred])})" if m.get(pred) is not None else ""
            parts.append(f"{label} {_bytes(m[key])}{predicted}")
    return "   ".join(parts)

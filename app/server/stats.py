"""What the server did: a bounded log of requests and the rates the window shows.

Recorded on the server's event loop, read from the window's thread: every method takes the lock.
Prompts, answers and keys are never recorded — only sizes, times and the outcome.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

LOG_SIZE = 500  # requests kept for the window's log
RATE_WINDOW_S = 10.0  # requests/s and tokens/s over this many recent seconds


@dataclass(frozen=True)
class RequestRecord:
    at: float  # time.time() when it ended
    method: str
    path: str
    status: int
    client: str  # "127.0.0.1:53422"
    duration_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None  # request received → first token sent
    gen_tok_s: float | None = None  # the engine's generation speed for this answer
    outcome: str = ""  # finish_reason, "cancelled (client left)", or the error's first words


@dataclass(frozen=True)
class Rates:
    requests_per_s: float
    tokens_per_s: float  # generated tokens per second, all requests together
    total_requests: int
    errors: int


class ServerStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=LOG_SIZE)
        self._total = 0
        self._errors = 0

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._log.append(rec)
            self._total += 1
            if rec.status >= 400:
                self._errors += 1

    def recent(self, n: int = LOG_SIZE) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)[-n:]

    def rates(self, *, now: float | None = None, window_s: float = RATE_WINDOW_S) -> Rates:
        t = time.time() if now is None else now
        with self._lock:
            recent = [r for r in self._log if r.at >= t - window_s]
            total, errors = self._total, self._errors
        tokens = sum(r.completion_tokens or 0 for r in recent)
        return Rates(len(recent) / window_s, tokens / window_s, total, errors)

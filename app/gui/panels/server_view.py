"""The Server panel's words and numbers, without Qt: the address choices, the rates line, the request
log's rows (newest first; what was not measured shows as "—") and the example command."""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.server.stats import Rates, RequestRecord

# (address to listen on, what the user is offered); the first is the default
HOSTS = (
    ("127.0.0.1", "Only this computer (127.0.0.1)"),
    ("0.0.0.0", "Other devices on my network (0.0.0.0)"),
)
COLUMNS = ("Time", "Request", "Status", "Tokens in/out", "tok/s", "First token", "Duration", "Outcome")
LOG_ROWS = 200  # requests shown in the log, newest first (app.server.stats keeps LOG_SIZE)
NO_MODEL = "No model: the server answers with the model the Chat panel has loaded."
NO_MODEL_SHORT = "Load a model in Chat first."
NOT_SERVING = "Not serving."
MODEL_GONE = "Stopped serving: the chat has no model any more. Load one in Chat to serve again."
KEY_TIP = (
    "Clients send it as “Authorization: Bearer KEY”. It is kept in memory for this session only, "
    "never saved: generate or paste it again after a restart."
)
KEY_HINT = "Press Generate for a key, or choose “Only this computer”."
ANY_PORT = "Any free port"  # the port spin box at 0: the system picks one (the address shows it)
UNKNOWN = "—"  # not measured: never shown as 0


def rates_text(rates: Rates) -> str:
    """ "0.3 req/s · 12.5 tok/s · total 4 · errors 0" (the rates over the last few seconds)."""
    return (f"{rates.requests_per_s:.1f} req/s · {rates.tokens_per_s:.1f} tok/s · "
            f"total {rates.total_requests} · errors {rates.errors}")  # fmt: skip


def model_text(label: str, n_ctx: int) -> str:
    return f"{label} · {n_ctx:,}-token context (loaded in Chat)"


def example_command(url: str, *, with_key: bool) -> str:
    """A line to try the server from a terminal."""
    key = ' -H "Authorization: Bearer YOUR_KEY"' if with_key else ""
    return f"curl{key} {url}/models"


def serving_text(*, network: bool) -> str:
    """The status line while serving (the address is shown below it)."""
    if network:
        return ("Serving to other devices too: they use this computer's network address in place of "
                "0.0.0.0, and send the API key.")  # fmt: skip
    return "Serving: programs on this computer can use the model now."


def log_rows(records: Sequence[RequestRecord]) -> list[tuple[str, ...]]:
    """One row per request, newest first, in :data:`COLUMNS` order."""
    return [log_row(r) for r in reversed(records)]


def log_row(r: RequestRecord) -> tuple[str, ...]:
    tokens = (UNKNOWN if r.prompt_tokens is None and r.completion_tokens is None
              else f"{_count(r.prompt_tokens)} / {_count(r.completion_tokens)}")  # fmt: skip
    return (
        time.strftime("%H:%M:%S", time.localtime(r.at)),
        f"{r.method} {r.path}",
        str(r.status),
        tokens,
        UNKNOWN if r.gen_tok_s is None else f"{r.gen_tok_s:.1f}",
        UNKNOWN if r.ttft_ms is None else f"{r.ttft_ms:.0f} ms",
        duration_text(r.duration_s),
        r.outcome or UNKNOWN,
    )


def port_of(url: str) -> int | None:
    """The port of a server's address ("http://127.0.0.1:8080/v1" → 8080)."""
    return urlsplit(url).port


def duration_text(seconds: float) -> str:
    if seconds < 0.001:
        return "<1 ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _count(n: int | None) -> str:
    return UNKNOWN if n is None else str(n)

"""The server's door: who may talk to it, how much they may send, and the log of what they asked.

A pure ASGI middleware, outside everything but CORS (a browser's preflight carries no key):

- **Host**: bound to a loopback address, only requests addressed to ``localhost``/``127.0.0.1``/
  ``[::1]`` are served — a web page cannot reach the model through DNS rebinding (a hostile name
  that resolves to 127.0.0.1).
- **Key**: with an API key, every request but ``GET /health`` must carry it
  (``Authorization: Bearer KEY``, or ``x-api-key``), compared in constant time; the key is never
  logged or echoed.
- **Size**: a declared body over the limit is refused before it is read (the routes also count
  what they read, for bodies sent without a length).
- **Log**: every request's method, path, status, client and duration (no bodies) go to
  :class:`~app.server.stats.ServerStats`, with the token counts the route left in the scope.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from app.server.openai_shapes import error_body
from app.server.stats import RequestRecord, ServerStats

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
OPEN_PATHS = frozenset({"/health"})


def host_name(host_header: str) -> str:
    """``Host: [::1]:8080`` → ``[::1]``; ``localhost:8080`` → ``localhost``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app: Any, *, stats: ServerStats, api_key: str | None, loopback_only: bool,
                 max_body_bytes: int) -> None:  # fmt: skip
        self.app = app
        self.stats = stats
        self._key = api_key.encode() if api_key else None
        self.loopback_only = loopback_only
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [0]

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _send_json(send_logged, *refusal)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            self._log(scope, status[0] or 499, time.perf_counter() - t0)  # 499: the client left first

    def _refusal(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.loopback_only and host_name(headers.get("host", "")) not in LOOPBACK_NAMES:
            return 403, error_body("This server answers requests addressed to localhost only.",
                                   kind="permission_error", code="host_not_allowed"), {}  # fmt: skip
        if self._key is not None and scope["method"] != "OPTIONS" and scope["path"] not in OPEN_PATHS:
            auth = headers.get("authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), self._key):
                return 401, error_body("Incorrect or missing API key: send it as 'Authorization: Bearer KEY'.",
                                       code="invalid_api_key"), {"www-authenticate": "Bearer"}  # fmt: skip
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return 413, error_body(f"The request body is larger than {self.max_body_bytes:,} bytes.",
                                   code="request_too_large"), {}  # fmt: skip
        return None

    def _log(self, scope: dict[str, Any], status: int, duration_s: float) -> None:
        state = scope.get("state") or {}
        client = scope.get("client") or ("", 0)
        self.stats.record(RequestRecord(
            at=time.time(), method=scope["method"], path=scope["path"], status=status,
            client=f"{client[0]}:{client[1]}", duration_s=duration_s,
            prompt_tokens=state.get("prompt_tokens"), completion_tokens=state.get("completion_tokens"),
            ttft_ms=state.get("ttft_ms"), gen_tok_s=state.get("gen_tok_s"), outcome=str(state.get("outcome", "")),
        ))  # fmt: skip


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})

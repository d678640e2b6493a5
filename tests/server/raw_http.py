"""Raw HTTP for the server's tests: exact bytes, any header, reading a stream line by line."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(url: str, timeout: float = 120) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)


def request(url: str, method: str, path: str, body: bytes | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, *, chunked: bool = False) -> Answer:  # fmt: skip
    conn = connect(url)
    try:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        hdrs = {"content-type": "application/json", **(headers or {})}
        if chunked:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.putheader("transfer-encoding", "chunked")
            conn.endheaders()
            for i in range(0, len(raw or b""), 65536):
                piece = (raw or b"")[i : i + 65536]
                conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.request(method, path, body=raw, headers=hdrs)
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def post(url: str, path: str, body: bytes | dict[str, Any], **kwargs: Any) -> Answer:
    return request(url, "POST", path, body, **kwargs)


def api_path(url: str, endpoint: str) -> str:
    """``/v1/chat/completions`` for the server at ``url`` (which ends in /v1)."""
    return urlsplit(url).path + endpoint

"""HTTP to the Hugging Face Hub with the stdlib client: the endpoint, the user's token, and
redirects that never carry the token to another host.

The Hub answers a file request with a redirect to its CDN (another host, a pre-signed URL).
urllib's default redirect handler copies every header, ``Authorization`` included, to the new
host; ours keeps it only when the host stays the same. The token itself is never logged or put
into an error message.
"""

from __future__ import annotations

import math
import os
import urllib.request
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import quote, urlsplit


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


TIMEOUT_ENV = "TAILORLM_HUB_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 20.0  # connect and each read; the Hub's API answers in well under a second


def hub_timeout_s() -> float:
    """Seconds to wait for the Hub to connect and for each read (``TAILORLM_HUB_TIMEOUT_S``)."""
    try:
        value = float(os.environ.get(TIMEOUT_ENV, ""))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if math.isfinite(value) and value > 0 else DEFAULT_TIMEOUT_S


def hub_token() -> str | None:
    """``HF_TOKEN``, else huggingface_hub's stored login (``hf auth login``), else None."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:  # pragma: no cover - a dependency
        return None


def resolve_url(repo_id: str, filename: str, revision: str = "main") -> str:
    return f"{hub_endpoint()}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"


def auth_headers() -> dict[str, str]:
    token = hub_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


class _SameHostAuthRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in ("http", "https"):
            return None  # urllib would follow ftp://; None makes the 3xx an HTTPError
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
            # urllib keeps headers in a dict keyed by str.capitalize()
            new.headers.pop("Authorization", None)
        return new


_opener = urllib.request.build_opener(_SameHostAuthRedirect())


def open_url(url: str, headers: dict[str, str] | None = None, *, timeout_s: float | None = None) -> Any:
    """``urlopen`` with token-safe redirects and a connect/read timeout (``hub_timeout_s()`` by
    default); raises urllib's HTTPError/URLError like it. A redirect loop is an HTTPError 3xx.

    Every Hub request comes here, so here is where an unreachable host is refused at once:
    :class:`~app.core.errors.OfflineError` within a second (``app.core.hub.online``)."""
    from app.core.hub.online import require_online

    require_online(url)
    timeout = hub_timeout_s() if timeout_s is None else timeout_s
    return _opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout)

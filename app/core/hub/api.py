"""The Hub's JSON API (search, a repo's commit, a repo's file tree) and a repo's small files
(``config.json``), bounded and shape-checked.

Our own client on the stdlib opener rather than ``HfApi``: its paginated listings retry a silent
server six times with back-off (over 20 s before the timeouts themselves) and parse any JSON
into objects whose wrong shapes surface as KeyError or TypeError. Here every request has a
connect/read timeout, one retry (GETs are safe to repeat), a size and time bound on the body,
and every answer is checked against the shape the Hub documents before anyone uses it.
"""

from __future__ import annotations

import json
import time
import urllib.error
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

from app.core.errors import HubError, ModelNotFoundError, OfflineError, TailorError
from app.core.hub.http import auth_headers, hub_endpoint, hub_timeout_s, open_url, resolve_url
from app.core.hub.names import check_commit, check_sha256, hostile, safe_relpath
from app.core.hub.online import request_failed

MAX_JSON_BYTES = 64 * 2**20  # a 1,000-entry tree page is ~300 KB; far above any real answer
MAX_PAGES = 100  # the Hub pages trees by 1,000 entries: 100,000 files is more than any model repo
RETRIES = 1  # one more try on a timeout or a dropped connection
DEADLINE_TIMEOUTS = 4  # a whole answer must arrive within this many timeouts, however it trickles


@dataclass(frozen=True)
class TreeFile:
    """One file of a repo, as the tree API lists it."""

    path: str  # as the Hub spells it; safe_relpath checks it before it becomes a path
    size_bytes: int
    sha256: str | None  # from the LFS pointer; None for a file stored in git itself


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise hostile(f"{what} is {str(value)[:40]!r}, not a size")
    return value


def _error(code: int, error_code: str | None, what: str) -> TailorError:
    if error_code == "GatedRepo":
        return HubError(f"{what} is gated.", hint="Accept its license on the Hub and set HF_TOKEN.")
    if error_code == "RevisionNotFound":
        return ModelNotFoundError(f"{what}: no such branch, tag or commit on the Hub.",
                                  hint="Check the revision name.")  # fmt: skip
    if code in (401, 404):
        return ModelNotFoundError(f"The Hub has no repo {what!r} (or it is private).",
                                  hint="Check the name; for a private repo set HF_TOKEN.")  # fmt: skip
    if 300 <= code < 400:
        return HubError(f"The Hub redirected in a loop (or too many times) for {what}.",
                        hint="Try again later; check HF_ENDPOINT.")  # fmt: skip
    return HubError(f"The Hub answered {code} for {what}.", hint="Try again later.")


def _read_body(resp: Any, deadline: float, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The body, at most ``max_bytes`` and by ``deadline``: a server that drips one byte per
    timeout must not keep us for hours."""
    chunks, n = [], 0
    while chunk := resp.read1(1 << 16):
        chunks.append(chunk)
        n += len(chunk)
        if n > max_bytes:
            raise hostile(f"an answer over {max_bytes / 2**20:g} MiB")
        if time.monotonic() > deadline:
            raise HubError("The Hub answered too slowly.", hint="Check the connection and try again.")
    return b"".join(chunks)


def _fetch(
    url: str, what: str, headers: dict[str, str], *, max_bytes: int = MAX_JSON_BYTES, missing_ok: bool = False
) -> tuple[bytes, str | None] | None:
    """GET ``url`` → (body, its ``Link`` header), with the timeout, the retry and the bounds; None
    for a file the repo does not have (``missing_ok``: a 404 that says ``EntryNotFound``)."""
    timeout = hub_timeout_s()
    for attempt in range(RETRIES + 1):
        try:
            with open_url(url, {**headers, **auth_headers()}, timeout_s=timeout) as resp:
                body = _read_body(resp, time.monotonic() + DEADLINE_TIMEOUTS * timeout, max_bytes)
                return body, resp.headers.get("Link")
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            code = exc.headers.get("X-Error-Code")
            if missing_ok and exc.code == 404 and code == "EntryNotFound":
                return None
            raise _error(exc.code, code, what) from None
        except OSError as exc:  # URLError, a timeout, a reset connection
            failed = request_failed(exc, what, url, timeout_s=timeout)  # offline: at once, no retry
            if attempt < RETRIES and not isinstance(failed, OfflineError):
                continue
            raise failed from None
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _get(url: str, what: str) -> tuple[Any, str | None]:
    """GET ``url`` → (parsed JSON, the next page's URL from the ``Link`` header or None)."""
    fetched = _fetch(url, what, {"Accept": "application/json"})
    assert fetched is not None  # only missing_ok returns None
    body, link = fetched
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # HTML, truncated JSON, nesting deeper than Python's stack
        raise hostile(f"not JSON for {what}") from None
    return doc, _next_page(link, url)


def _next_page(link: str | None, url: str) -> str | None:
    """The ``rel="next"`` URL of a GitHub-style ``Link`` header, only on the same host."""
    for part in (link or "").split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            nxt = urljoin(url, target.strip().strip("<>"))
            if urlsplit(nxt).netloc != urlsplit(url).netloc:
                raise hostile("a next page on another host")
            return nxt
    return None


def search(query: str, *, limit: int) -> list[dict[str, Any]]:
    """Raw search hits (objects with at least a string ``id``), most downloaded first."""
    params = {"filter": "gguf", "sort": "downloads", "limit": str(limit)}
    if query:
        params["search"] = query
    doc, _ = _get(f"{hub_endpoint()}/api/models?{urlencode(params)}", f"search {query!r}")
    if not isinstance(doc, list) or not all(
        isinstance(m, dict) and isinstance(m.get("id"), str) for m in doc
    ):
        raise hostile("the search results are not a list of repos")
    return doc[:limit]


def repo_commit(repo_id: str, revision: str) -> str:
    """The 40-hex commit that ``revision`` of ``repo_id`` points at now."""
    url = f"{hub_endpoint()}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    doc, _ = _get(url, repo_id)
    if not isinstance(doc, dict):
        raise hostile(f"the model info of {repo_id} is not an object")
    return check_commit(doc.get("sha"))


def list_tree(repo_id: str, revision: str, *, recursive: bool = True) -> list[TreeFile]:
    """Every file of the repo (folders left out), each path and LFS SHA-256 checked."""
    url = f"{hub_endpoint()}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
    url += "?recursive=true" if recursive else ""
    files: list[TreeFile] = []
    for _ in range(MAX_PAGES):
        doc, nxt = _get(url, repo_id)
        if not isinstance(doc, list):
            raise hostile(f"the file list of {repo_id} is not a list")
        files.extend(f for e in doc if (f := _tree_entry(e)) is not None)
        if nxt is None:
            return files
        url = nxt
    raise hostile(f"the file list of {repo_id} runs over {MAX_PAGES} pages")


def _tree_entry(e: object) -> TreeFile | None:
    if not isinstance(e, dict) or not isinstance(e.get("path"), str):
        raise hostile("a file entry is not an object with a path")
    if e.get("type") != "file":
        return None  # "directory": its files are listed on their own
    path = e["path"]
    lfs = e.get("lfs")
    if lfs is not None and not isinstance(lfs, dict):
        raise hostile(f"the LFS pointer of {path[:80]!r} is not an object")
    sha = check_sha256(lfs.get("oid")) if lfs is not None else None
    return TreeFile(path, _int(e.get("size"), f"the size of {path[:80]!r}"), sha)


def repo_file(
    repo_id: str, path: str, *, revision: str = "main", max_bytes: int = MAX_JSON_BYTES
) -> bytes | None:
    """The bytes of a small file of a repo (``config.json``), at most ``max_bytes``; None when
    the repo exists but has no such file."""
    url = resolve_url(repo_id, str(safe_relpath(path)), revision)
    fetched = _fetch(url, repo_id, {}, max_bytes=max_bytes, missing_ok=True)
    return None if fetched is None else fetched[0]

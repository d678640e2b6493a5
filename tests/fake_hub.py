"""A local HTTP server that answers the parts of the Hugging Face Hub API that huggingface_hub and
TailorLM use, serving real files. Tests point ``HF_ENDPOINT`` at it; nothing leaves the machine.

- ``GET /api/models?search=…&filter=gguf&sort=downloads&limit=N``: search, most downloaded first
- ``GET /api/models/{repo}[/revision/{rev}]``: model info (sha, siblings, gated, downloads)
- ``GET /api/models/{repo}/tree/{rev}``: files with sizes and LFS SHA-256s
- ``HEAD/GET /{repo}/resolve/{rev}/{path}``: like the Hub, an LFS file answers with a 302 to a CDN
  URL on *another host name* (``localhost`` instead of ``127.0.0.1``) carrying ``X-Linked-Size``,
  ``X-Linked-Etag`` and ``X-Repo-Commit``; the CDN serves the bytes with ``Range`` and ``ETag``.
- a gated repo answers 401 (``X-Error-Code: GatedRepo``) to resolve requests without its token.

Files are ``bytes`` or a ``Path`` (streamed, for big files). ``drop_after`` cuts the next GET of a
file after so many bytes (a dropped connection); ``requests`` logs every request, with a mark
when it carried an ``Authorization`` header (never its value).

A hostile Hub, for the tests that it cannot hang us or make us write outside the cache:
``RepoMeta.commit`` / ``RepoMeta.lfs_oids`` replace the commit id and LFS SHA-256s it reports
(``"../../outside"``, an absolute path, …), and ``answer`` turns every API request into one of
``ANSWERS``: ``silent`` (accepts, never answers), ``html`` (200 with a web page),
``wrong-shape`` (an object where a list is expected and a list where an object is),
``numbers`` (numbers where objects are expected), ``deep`` (arrays nested 100,000 deep),
``redirect-loop`` (302 to itself, for API and file requests alike). One of ``FILE_ANSWERS`` leaves the
API alone and spoils the answers to range requests (the reads of a remote header):
``trickle`` (one byte every ``TRICKLE_S`` seconds, so no single read ever times out).
Hostile file *contents* (a GGUF with nested arrays, a safetensors length prefix of 90 MB) are just
blobs of a repo.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
Blob = bytes | Path


@dataclass
class RepoMeta:
    downloads: int = 0
    likes: int = 0
    gated_token: str | None = None  # set: resolve needs "Authorization: Bearer <token>"
    tags: tuple[str, ...] = ()
    # path → size the tree API reports instead of the real one (a file too big for the disk)
    claimed_sizes: dict[str, int] = field(default_factory=dict)
    commit: str = COMMIT  # the "sha" of the model info and X-Repo-Commit: hostile tests set a path
    lfs_oids: dict[str, str] = field(default_factory=dict)  # path → the LFS oid the tree reports


ANSWERS = ("silent", "html", "wrong-shape", "numbers", "deep", "redirect-loop")
FILE_ANSWERS = ("trickle",)
TRICKLE_S = 0.2  # well under any test's read timeout: only a deadline over the whole read ends it


class _Handler(BaseHTTPRequestHandler):
    repos: ClassVar[dict[str, dict[str, Blob]]] = {}
    meta: ClassVar[dict[str, RepoMeta]] = {}
    drop_after: ClassVar[dict[str, int]] = {}
    requests: ClassVar[list[str]] = []
    redirect: ClassVar[bool] = True
    rate_bytes_s: ClassVar[float] = 0.0  # > 0: pace each response like a link of this speed
    answer: ClassVar[str | None] = None  # one of ANSWERS
    released: ClassVar[threading.Event]  # set when the server stops: a silent handler lets go
    _hashes: ClassVar[dict[tuple[str, str], tuple[str, str, int]]] = {}
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    # --- helpers -----------------------------------------------------------------------------

    def _hash(self, repo: str, path: str) -> tuple[str, str, int]:
        """(sha256, git sha1, size) of a file, computed once."""
        key = (repo, path)
        if key not in self._hashes:
            blob = self.repos[repo][path]
            data = blob.read_bytes() if isinstance(blob, Path) else blob
            sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self._hashes[key] = (hashlib.sha256(data).hexdigest(), sha1, len(data))
        return self._hashes[key]

    def _json(self, obj: object, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str = "") -> None:
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _log(self) -> None:
        auth = " [auth]" if self.headers.get("Authorization") else ""
        self.requests.append(f"{self.command} {self.path} {self.headers.get('Range', '')}{auth}".rstrip())

    def _meta(self, repo: str) -> RepoMeta:
        return self.meta.get(repo) or RepoMeta()

    def _authorized(self, repo: str) -> bool:
        token = self._meta(repo).gated_token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    # --- API ---------------------------------------------------------------------------------

    def _api(self, parts: list[str], query: dict[str, list[str]]) -> None:
        if parts == ["api", "models"]:
            self._search(query)
            return
        repo = "/".join(parts[2:4])
        if repo not in self.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        rest = parts[4:]
        if not rest or rest[0] == "revision":
            self._info(repo)
        elif rest[0] == "tree":
            self._tree(repo)
        else:
            self._error(404, "EntryNotFound")

    def _tags(self, repo: str) -> list[str]:
        gguf = any(p.endswith(".gguf") for p in self.repos[repo])
        return [*(["gguf"] if gguf else []), *self._meta(repo).tags]

    def _search(self, query: dict[str, list[str]]) -> None:
        words = [w.lower() for w in query.get("search", [""])[0].split()]
        filters = query.get("filter", [])
        hits = [
            r
            for r in self.repos
            if all(w in r.lower() for w in words) and all(f in self._tags(r) for f in filters)
        ]
        if query.get("sort", [""])[0] == "downloads":
            hits.sort(key=lambda r: -self._meta(r).downloads)
        limit = int(query.get("limit", ["0"])[0] or 0)
        hits = hits[:limit] if limit else hits
        self._json([{"id": r, "modelId": r, "downloads": self._meta(r).downloads, "likes": self._meta(r).likes,
                     "tags": self._tags(r), "gated": self._meta(r).gated_token is not None and "auto",
                     "private": False, "lastModified": "2026-01-01T00:00:00.000Z"} for r in hits])  # fmt: skip

    def _info(self, repo: str) -> None:
        m = self._meta(repo)
        self._json({"id": repo, "modelId": repo, "sha": m.commit, "private": False, "downloads": m.downloads,
                    "likes": m.likes, "tags": self._tags(repo), "gated": m.gated_token is not None and "auto",
                    "siblings": [{"rfilename": p} for p in sorted(self.repos[repo])]})  # fmt: skip

    def _tree(self, repo: str) -> None:
        entries = []
        for path in sorted(self.repos[repo]):
            sha256, sha1, size = self._hash(repo, path)
            size = self._meta(repo).claimed_sizes.get(path, size)
            entry: dict[str, object] = {"type": "file", "path": path, "size": size, "oid": sha1}
            if not path.endswith((".json", ".txt", ".md")):
                oid = self._meta(repo).lfs_oids.get(path, sha256)
                entry["lfs"] = {"size": size, "oid": oid, "pointerSize": 134}
            entries.append(entry)
        self._json(entries)

    # --- files -------------------------------------------------------------------------------

    def _resolve(self, parts: list[str], head: bool) -> None:
        repo, path = "/".join(parts[:2]), unquote("/".join(parts[4:]))
        if repo not in self.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        if path not in self.repos[repo]:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        if not self._authorized(repo):
            self._error(401, "GatedRepo", "Access to this repo is restricted; you must be authenticated.")
            return
        sha256, sha1, size = self._hash(repo, path)
        lfs = not path.endswith((".json", ".txt", ".md"))
        if lfs and self.redirect:
            port = self.server.server_address[1]
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{port}/cdn-lfs/{repo}/{sha256}?file={path}")
            self.send_header("X-Repo-Commit", self._meta(repo).commit)
            self.send_header("X-Linked-Size", str(size))
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("ETag", f'"{sha1}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_file(repo, path, f'"{sha256 if lfs else sha1}"', head)

    def _cdn(self, parts: list[str], query: dict[str, list[str]], head: bool) -> None:
        repo, sha = "/".join(parts[1:3]), parts[3]
        path = query.get("file", [""])[0]
        if repo not in self.repos or path not in self.repos[repo] or self._hash(repo, path)[0] != sha:
            self._error(404, "EntryNotFound")
            return
        self._send_file(repo, path, f'"{sha}"', head)

    def _send_file(self, repo: str, path: str, etag: str, head: bool) -> None:
        blob = self.repos[repo][path]
        size = self._hash(repo, path)[2]
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end, status = int(a or 0), min(int(b), size - 1) if b else size - 1, 206
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        cut = self.drop_after.pop(path, None)
        remaining = end - start + 1 if cut is None else min(cut, end - start + 1)
        if self.answer == "trickle" and rng:
            self._trickle(blob, start, remaining)
        elif isinstance(blob, Path):
            with blob.open("rb") as f:
                f.seek(start)
                t0, sent = time.perf_counter(), 0
                while remaining > 0:
                    chunk = f.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
                    sent += len(chunk)
                    if self.rate_bytes_s:
                        time.sleep(max(0.0, sent / self.rate_bytes_s - (time.perf_counter() - t0)))
        else:
            self.wfile.write(blob[start : start + remaining])
        if cut is not None:
            self.close_connection = True

    def _trickle(self, blob: Blob, start: int, n: int) -> None:
        """Send ``n`` bytes from ``start`` one at a time, ``TRICKLE_S`` apart, until the client
        gives up or the server stops."""
        if isinstance(blob, Path):
            with blob.open("rb") as f:
                f.seek(start)
                data = f.read(min(n, 1 << 20))  # more than any test waits for
        else:
            data = blob[start : start + n]
        try:
            for i in range(len(data)):
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if self.released.wait(TRICKLE_S):
                    break
        except OSError:  # the client hung up: what a trickle is meant to provoke
            pass
        self.close_connection = True

    def _hostile(self, api: bool) -> bool:
        """Answer as ``answer`` says; False when this request gets the normal answer."""
        if self.answer == "silent":
            self.released.wait()  # accepted, never answered
            self.close_connection = True
        elif self.answer == "redirect-loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif not api or self.answer is None or self.answer in FILE_ANSWERS:
            return False
        elif self.answer == "html":
            body = b"<!DOCTYPE html><html><body><h1>Welcome to our captive portal</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.answer == "wrong-shape":
            listing = "/tree/" in self.path or self.path.startswith("/api/models?")
            self._json({"error": "not a list", "items": {"a": 1}} if listing else [{"sha": COMMIT}])
        elif self.answer == "numbers":
            self._json([1, 2, 3] if "/tree/" in self.path or "?" in self.path else 42)
        elif self.answer == "deep":
            body = b"[" * 100_000 + b"]" * 100_000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        return True

    def _route(self, head: bool) -> None:
        self._log()
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if self._hostile(api=parts[:1] == ["api"]):
            return
        if parts[:1] == ["api"] and not head:
            self._api(parts, query)
        elif parts[:1] == ["cdn-lfs"] and len(parts) == 4:
            self._cdn(parts, query, head)
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(parts, head)
        else:
            self._error(404, "EntryNotFound")

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (what the hostile answers provoke) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (the OS just handed it out and took it back):
    a Hub that is down, until a test starts ``fake_hub(..., port=...)`` on it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def hanging_up_server() -> Iterator[str]:
    """A host that is up (it accepts connections, so we are online) but closes every connection
    without a word; yields its URL."""
    import contextlib
    import socket

    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(65536)  # the request, unanswered

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        sock.close()


@contextmanager
def fake_hub(
    repos: dict[str, dict[str, Blob]],
    *,
    meta: dict[str, RepoMeta] | None = None,
    drop_after: dict[str, int] | None = None,
    requests: list[str] | None = None,
    redirect: bool = True,
    rate_bytes_s: float = 0.0,
    answer: str | None = None,
    port: int = 0,
) -> Iterator[str]:
    """Serve ``{repo_id: {path: bytes | Path}}`` on 127.0.0.1 (on ``port``: a free one by default);
    yields the endpoint URL. The Hub's cached "reachable?" verdicts are forgotten first, so a
    verdict about an earlier server on the same port never answers for this one."""
    from app.core.hub.online import forget

    assert answer is None or answer in ANSWERS + FILE_ANSWERS, answer
    released = threading.Event()
    handler = type("Handler", (_Handler,), {
        "repos": repos, "meta": meta or {}, "drop_after": drop_after if drop_after is not None else {},
        "requests": requests if requests is not None else [], "redirect": redirect, "_hashes": {},
        "rate_bytes_s": rate_bytes_s, "answer": answer, "released": released,
    })  # fmt: skip
    server = _Server(("127.0.0.1", port), handler)
    forget()
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        released.set()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":  # for benchmarks: python -m tests.fake_hub [--rate-mib-s R] REPO FILE...
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-mib-s", type=float, default=0.0, help="pace responses like a link of this speed")
    ap.add_argument("repo")
    ap.add_argument("files", nargs="+", type=Path)
    a = ap.parse_args()
    with fake_hub({a.repo: {f.name: f for f in a.files}}, rate_bytes_s=a.rate_mib_s * 2**20) as endpoint:
        print(endpoint, flush=True)
        while True:
            time.sleep(3600)

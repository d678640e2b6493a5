"""A local HTTP server that answers the parts of the Hugging Face Hub API huggingface_hub uses to
fetch a file (``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ETag, X-Repo-Commit and Range).

Tests point ``HF_ENDPOINT`` at it; nothing leaves the machine. The hub issue grows it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Handler(BaseHTTPRequestHandler):
    repos: ClassVar[dict[str, dict[str, bytes]]] = {}
    # path → byte count: the next GET of that file stops after so many bytes (a dropped connection)
    drop_after: ClassVar[dict[str, int]] = {}
    requests: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _file(self) -> tuple[bytes, str] | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        # {org}/{name}/resolve/{revision}/{path...}
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo, path = "/".join(parts[:2]), "/".join(parts[4:])
        data = self.repos.get(repo, {}).get(path)
        return (data, f'"{hashlib.sha256(data).hexdigest()}"') if data is not None else None

    def _headers(self, data: bytes, etag: str, status: int = 200, start: int = 0, end: int | None = None) -> None:
        end = len(data) - 1 if end is None else end
        self.send_response(status)
        self.send_header("ETag", etag)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()

    def _missing(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "EntryNotFound" if "/resolve/" in self.path else "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        found = self._file()
        if found is None:
            self._missing()
            return
        self._headers(*found)

    def _tree(self) -> bool:
        """``GET /api/models/{repo}/tree/{rev}``: the file list with sizes and LFS SHA-256s."""
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) < 6 or parts[:2] != ["api", "models"] or parts[4] != "tree":
            return False
        repo = "/".join(parts[2:4])
        if repo not in self.repos:
            self._missing()
            return True
        entries = [
            {"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest(),
             "lfs": {"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}}
            for path, data in sorted(self.repos[repo].items())
        ]  # fmt: skip
        body = json.dumps(entries).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path} {self.headers.get('Range', '')}")
        if self._tree():
            return
        found = self._file()
        if found is None:
            self._missing()
            return
        data, etag = found
        path = self.path.split("/resolve/", 1)[-1].split("/", 1)[-1]
        cut = self.drop_after.pop(path, None)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a or 0), int(b) if b else len(data) - 1
            self._headers(data, etag, 206, start, end)
            body = data[start : end + 1]
        else:
            self._headers(data, etag)
            body = data
        if cut is not None:
            self.wfile.write(body[:cut])
            self.close_connection = True
            return
        self.wfile.write(body)


@contextmanager
def fake_hub(repos: dict[str, dict[str, bytes]], *, drop_after: dict[str, int] | None = None,
             requests: list[str] | None = None) -> Iterator[str]:  # fmt: skip
    """Serve ``{repo_id: {path: bytes}}`` on 127.0.0.1; yields the endpoint URL."""
    handler = type("Handler", (_Handler,), {"repos": repos, "drop_after": drop_after if drop_after is not None else {},
                                            "requests": requests if requests is not None else []})  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

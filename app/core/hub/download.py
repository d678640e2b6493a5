"""Resumable, verified downloads of large files over HTTP(S) — the part huggingface_hub no longer
does (since 1.18 a failed or cancelled download deletes its partial file).

The bytes go to ``<dest>.part`` beside a small ``<dest>.part.json`` that records the server's
ETag and size; a later call (after a dropped connection, a cancel, a crash or a restart) resumes
with a Range request if the ETag still matches. The file is renamed into place only after its
size and SHA-256 check out. A plain function with a progress callback and a cancel flag, as the
CLI and the GUI's workers both need.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import queue
import shutil
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path
from typing import Any

from app.core.errors import Cancelled, DownloadCorruptError, HubError, NetworkError, TailorError
from app.core.hub.http import hub_timeout_s, open_url
from app.core.hub.online import hub_verdict, reason_in_words
from app.core.units import MIB, format_bytes

CHUNK_BYTES = 1 * MIB
DISK_MARGIN_BYTES = 64 * MIB  # never fill a disk to the last byte
RETRIES = 5


@dataclass(frozen=True)
class Progress:
    done_bytes: int
    total_bytes: int | None
    speed_bytes_s: float
    eta_s: float | None


class _Hasher:
    """SHA-256 of a file as it grows, computed on a thread beside the transfer.

    hashlib releases the GIL on large buffers, so hashing overlaps the socket reads and file
    writes instead of adding a second pass over the file at the end.
    """

    def __init__(self, prefix: Path | None, prefix_len: int) -> None:
        self._h = hashlib.sha256()
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._prefix, self._prefix_len = prefix, prefix_len
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._prefix is not None and self._prefix_len:  # a resumed file: its bytes so far
            with self._prefix.open("rb") as f:
                left = self._prefix_len
                while left > 0 and (block := f.read(min(left, 8 * MIB))):
                    self._h.update(block)
                    left -= len(block)
        while (chunk := self._q.get()) is not None:
            self._h.update(chunk)

    def feed(self, chunk: bytes) -> None:
        self._q.put(chunk)

    def hexdigest(self) -> str:
        self.close()
        return self._h.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _open(
    url: str, start: int, headers: dict[str, str], timeout_s: float
) -> tuple[Any, int | None, str | None]:
    resp = open_url(url, {**headers, "Range": f"bytes={start}-"} if start else headers, timeout_s=timeout_s)
    if start and resp.status != 206:
        resp.close()
        raise HubError(
            "The server ignored the resume request.", hint="Delete the partial file and try again."
        )
    total = None
    crange = resp.headers.get("Content-Range", "")
    if "/" in crange and crange.rsplit("/", 1)[1].isdigit():
        total = int(crange.rsplit("/", 1)[1])
    elif resp.headers.get("Content-Length", "").isdigit():
        total = int(resp.headers["Content-Length"]) + start
    etag = resp.headers.get("X-Linked-Etag") or resp.headers.get("ETag")
    return resp, total, etag


def check_disk_space(folder: Path, needed_bytes: int) -> None:
    """Raise a clear HubError when ``folder``'s disk cannot take ``needed_bytes`` more."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed_bytes + DISK_MARGIN_BYTES:
        raise HubError(
            f"Not enough disk space: the download needs {format_bytes(needed_bytes)}, "
            f"{format_bytes(free)} is free on {probe}.",
            hint="Free some space or choose a smaller quantization.",
        )


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    headers: dict[str, str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    retries: int = RETRIES,
    timeout_s: float | None = None,
    progress_interval_s: float = 0.1,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial file; returns ``dest`` once verified.

    Progress is reported at most every ``progress_interval_s`` and once at the end. ``timeout_s``
    bounds the connect and each read (``hub_timeout_s()`` when None).
    """
    timeout_s = hub_timeout_s() if timeout_s is None else timeout_s
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta = _meta_path(part)
    hdrs = dict(headers or {})
    saved: dict[str, object] = {}
    if part.exists() and meta.exists():
        with contextlib.suppress(json.JSONDecodeError, OSError):
            saved = json.loads(meta.read_text())
    if part.exists() and not saved:
        part.unlink()  # a partial file we cannot vouch for
    start = part.stat().st_size if part.exists() else 0
    hasher = _Hasher(part, start) if expected_sha256 else None
    attempt = 0
    t0, start0, last_report = time.monotonic(), start, 0.0
    size = expected_size

    def report(final: bool = False) -> None:
        nonlocal last_report
        now = time.monotonic()
        if on_progress is None or (not final and now - last_report < progress_interval_s):
            return
        last_report = now
        speed = (start - start0) / max(now - t0, 1e-6)
        eta = (size - start) / speed if size and speed > 0 else None
        on_progress(Progress(start, size, speed, eta))

    try:
        while True:
            try:
                resp, total, etag = _open(url, start, hdrs, timeout_s)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and start:  # the partial file is already complete
                    break
                raise _http_error(exc.code) from None
            except OSError as exc:  # URLError, a refused or dropped connection, a timeout
                attempt += 1
                if attempt > retries or start == start0:  # nothing came yet: offline says so at once
                    _raise_if_offline(url)
                if attempt > retries:
                    raise NetworkError(f"The download failed after {retries} retries ({reason_in_words(exc)}).",
                                       hint="Run it again: it resumes where it stopped.") from None  # fmt: skip
                _back_off(attempt, cancel)
                continue
            if start and saved.get("etag") not in (None, etag):
                resp.close()
                part.unlink()  # the file changed on the server: start over
                saved, start, start0 = {}, 0, 0
                if hasher is not None:
                    hasher.close()
                    hasher = _Hasher(None, 0)
                continue
            size = expected_size or total
            if size is not None:
                try:
                    check_disk_space(dest.parent, size - start)
                except HubError:
                    resp.close()
                    raise
            if not saved:
                meta.write_text(json.dumps({"url": url, "etag": etag, "size": size}))
                saved = {"etag": etag}
            try:
                with resp, part.open("ab") as out:
                    while True:
                        if cancel is not None and cancel.is_set():
                            raise Cancelled("Download stopped; it resumes next time.")
                        chunk = resp.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        out.write(chunk)
                        if hasher is not None:
                            hasher.feed(chunk)
                        start += len(chunk)
                        report()
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise HubError(f"The disk is full ({dest.parent}).",
                                   hint="Free some space; the download resumes where it stopped.") from None  # fmt: skip
                attempt += 1
                if attempt > retries:
                    raise _kept_dropping(url) from None
                start = part.stat().st_size  # what really reached the disk
                continue
            except IncompleteRead:
                attempt += 1
                if attempt > retries:
                    raise _kept_dropping(url) from None
                continue
            if size is not None and start < size:
                attempt += 1  # the server closed early: resume from here
                if attempt > retries:
                    raise _kept_dropping(url)
                continue
            break
        report(final=True)
        _verify(
            part, meta, expected_size, expected_sha256, hasher.hexdigest() if hasher is not None else None
        )
    finally:
        if hasher is not None:
            hasher.close()
    part.replace(dest)
    meta.unlink(missing_ok=True)
    return dest


def _raise_if_offline(url: str) -> None:
    verdict = hub_verdict(url, fresh=True)
    if not verdict.online:
        raise verdict.error()


def _kept_dropping(url: str) -> TailorError:
    """Retries spent on a connection that kept failing: offline, or a flaky link."""
    verdict = hub_verdict(url, fresh=True)
    if not verdict.online:
        return verdict.error()
    return NetworkError("The connection kept dropping.", hint="Run it again: it resumes where it stopped.")


def _back_off(attempt: int, cancel: threading.Event | None) -> None:
    """Wait before the next try (0.5 s doubling, at most 8 s); a cancel ends the wait."""
    delay = min(8.0, 0.5 * 2**attempt)
    if cancel is None:
        time.sleep(delay)
    elif cancel.wait(delay):
        raise Cancelled("Download stopped; it resumes next time.")


def _http_error(code: int) -> HubError:
    if code in (401, 403):
        return HubError(f"Access refused ({code}): the repo is gated or private.",
                        hint="Accept its license on the Hub and set HF_TOKEN (or run `hf auth login`).")  # fmt: skip
    if code == 404:
        return HubError("The file is not on the Hub (404).", hint="Check the repo and file name.")
    if 300 <= code < 400:  # urllib gives up on a loop or after 10 redirects
        return HubError(
            f"The server redirected in a loop ({code}).", hint="Try again later; check HF_ENDPOINT."
        )
    return HubError(f"The server answered {code}.", hint="Try again later.")


def _verify(part: Path, meta: Path, size: int | None, sha256: str | None, actual_sha256: str | None) -> None:
    actual = part.stat().st_size
    bad = None
    if size is not None and actual != size:
        bad = f"it has {actual:,} bytes instead of {size:,}"
    elif sha256 and actual_sha256 != sha256.lower():
        bad = "its SHA-256 does not match the Hub's"
    if bad:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadCorruptError(f"The downloaded file is damaged: {bad}. It was deleted.",
                                   hint="Download it again.")  # fmt: skip

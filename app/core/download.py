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
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import IncompleteRead
from pathlib import Path

from app.core.errors import Cancelled, HubError, TailorError
from app.core.units import MIB, format_bytes

CHUNK_BYTES = 1 * MIB
DISK_MARGIN_BYTES = 64 * MIB  # never fill a disk to the last byte
RETRIES = 5


class DownloadCorruptError(TailorError):
    """The downloaded bytes do not match the expected size or SHA-256."""


@dataclass(frozen=True)
class Progress:
    done_bytes: int
    total_bytes: int | None
    speed_bytes_s: float
    eta_s: float | None


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _open(url: str, start: int, headers: dict[str, str], timeout_s: float) -> tuple[object, int | None, str | None]:
    req = urllib.request.Request(url, headers={**headers, "Range": f"bytes={start}-"} if start else headers)
    resp = urllib.request.urlopen(req, timeout=timeout_s)
    if start and resp.status != 206:
        resp.close()
        raise HubError("The server ignored the resume request.", hint="Delete the partial file and try again.")
    total = None
    crange = resp.headers.get("Content-Range", "")
    if "/" in crange and crange.rsplit("/", 1)[1].isdigit():
        total = int(crange.rsplit("/", 1)[1])
    elif resp.headers.get("Content-Length", "").isdigit():
        total = int(resp.headers["Content-Length"]) + start
    etag = resp.headers.get("X-Linked-Etag") or resp.headers.get("ETag")
    return resp, total, etag


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
    timeout_s: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial file; returns ``dest`` once verified."""
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
    attempt = 0
    t0, start0 = time.monotonic(), start
    while True:
        try:
            resp, total, etag = _open(url, start, hdrs, timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # the partial file is already complete
                break
            if exc.code in (401, 403):
                raise HubError(f"Access refused ({exc.code}): the repo is gated or private.",
                               hint="Accept its license on the Hub and set HF_TOKEN.") from None  # fmt: skip
            if exc.code == 404:
                raise HubError("The file is not on the Hub (404).", hint="Check the repo and file name.") from None
            raise HubError(f"The server answered {exc.code}.") from None
        except (urllib.error.URLError, OSError) as exc:
            attempt += 1
            if attempt > retries:
                raise HubError(f"The download failed after {retries} retries ({exc.__class__.__name__}).",
                               hint="Run it again: it resumes where it stopped.") from None  # fmt: skip
            time.sleep(min(8.0, 0.5 * 2**attempt))
            continue
        if start and saved.get("etag") not in (None, etag):
            resp.close()  # type: ignore[attr-defined]
            part.unlink()  # the file changed on the server: start over
            saved, start = {}, 0
            continue
        size = expected_size or total
        if size is not None and not start:
            free = shutil.disk_usage(dest.parent).free
            if free < size - start + DISK_MARGIN_BYTES:
                resp.close()  # type: ignore[attr-defined]
                raise HubError(
                    f"Not enough disk space: the file needs {format_bytes(size - start)}, "
                    f"{format_bytes(free)} is free on {dest.parent}.",
                    hint="Free some space or choose a smaller quantization.",
                )
        meta.write_text(json.dumps({"url": url, "etag": etag, "size": size}))
        try:
            with resp, part.open("ab") as out:  # type: ignore[attr-defined]
                while True:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("Download stopped; it resumes next time.")
                    chunk = resp.read(CHUNK_BYTES)  # type: ignore[attr-defined]
                    if not chunk:
                        break
                    out.write(chunk)
                    start += len(chunk)
                    if on_progress is not None:
                        dt = max(time.monotonic() - t0, 1e-6)
                        speed = (start - start0) / dt
                        eta = (size - start) / speed if size and speed > 0 else None
                        on_progress(Progress(start, size, speed, eta))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise HubError(f"The disk is full ({dest.parent}).",
                               hint="Free some space; the download resumes where it stopped.") from None  # fmt: skip
            attempt += 1
            if attempt > retries:
                raise HubError("The connection kept dropping.", hint="Run it again: it resumes.") from None
            continue
        except IncompleteRead:
            attempt += 1
            if attempt > retries:
                raise HubError("The connection kept dropping.", hint="Run it again: it resumes.") from None
            continue
        if size is not None and start < size:
            attempt += 1  # the server closed early: resume from here
            if attempt > retries:
                raise HubError("The connection kept dropping.", hint="Run it again: it resumes.")
            continue
        break
    _verify(part, meta, expected_size, expected_sha256)
    part.replace(dest)
    meta.unlink(missing_ok=True)
    return dest


def _verify(part: Path, meta: Path, size: int | None, sha256: str | None) -> None:
    actual = part.stat().st_size
    bad = None
    if size is not None and actual != size:
        bad = f"it has {actual:,} bytes instead of {size:,}"
    elif sha256:
        h = hashlib.sha256()
        with part.open("rb") as f:
            for block in iter(lambda: f.read(8 * MIB), b""):
                h.update(block)
        if h.hexdigest() != sha256.lower():
            bad = "its SHA-256 does not match the Hub's"
    if bad:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadCorruptError(f"The downloaded file is damaged: {bad}. It was deleted.",
                                   hint="Download it again.")  # fmt: skip

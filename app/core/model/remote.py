"""A file on the Hugging Face Hub as a ``ByteSource``: HTTP range requests, so the advisor can read
a remote GGUF header (a few MB) and plan every quant file of a repo before downloading any.

Uses the stdlib HTTP client (redirects followed, which is how the Hub serves LFS files, without
the token once the host changes) and the user's token; see ``hub_http``. The server is a
stranger: every request has the Hub timeout (``TAILORLM_HUB_TIMEOUT_S``) and one retry, all the
reads of one source share a deadline (a server that trickles a byte a second never times out a
read), and a source fetches at most ``max_bytes`` in all.
"""

from __future__ import annotations

import re
import time
import urllib.error

from app.core.errors import CorruptModelError, HubError, ModelNotFoundError, OfflineError
from app.core.hub.api import DEADLINE_TIMEOUTS, RETRIES
from app.core.hub.files import GGUFFile
from app.core.hub.http import auth_headers, hub_endpoint, hub_timeout_s, open_url, resolve_url
from app.core.hub.online import request_failed
from app.core.model.gguf_header import GGUFHeader, join_split_parts, read_header
from app.core.model.info import ModelInfo, model_info_from_header

__all__ = ["MAX_GGUF_HEADER_BYTES", "HubFileSource", "hub_endpoint", "read_remote_gguf_header"]

_RANGE_TOTAL = re.compile(r"/(\d{1,20})$")
# Gemma 3's header, with its 262,144-token vocabulary, is 6.2 MiB (measured on the test model);
# ten times that is more than any real GGUF header and far less than any model's weights.
MAX_GGUF_HEADER_BYTES = 64 * 2**20
_READ_CHUNK = 1 << 16


class HubFileSource:
    """``read(offset, size)`` over a Hub file; counts the bytes it fetched.

    ``timeout_s``: connect and each read (default: the Hub timeout); ``deadline``: the
    ``time.monotonic()`` by which every read must be done (default: ``DEADLINE_TIMEOUTS`` timeouts
    after the first read); ``max_bytes``: the most this source fetches in all.
    """

    def __init__(
        self,
        repo_id: str,
        filename: str,
        *,
        revision: str = "main",
        timeout_s: float | None = None,
        deadline: float | None = None,
        max_bytes: int = MAX_GGUF_HEADER_BYTES,
    ) -> None:
        self.repo_id, self.filename = repo_id, filename
        self.url = resolve_url(repo_id, filename, revision)
        self.timeout_s = hub_timeout_s() if timeout_s is None else timeout_s
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.bytes_fetched = 0
        self._size: int | None = None

    @property
    def size(self) -> int | None:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        if self.bytes_fetched + size > self.max_bytes:
            raise CorruptModelError(
                f"{self.filename} on the Hub needs more than {self.max_bytes / 2**20:g} MiB read to "
                "describe it: its header is damaged or hostile.",
                hint="If it is a real model, download it and open the local file.",
            )
        if self.deadline is None:
            self.deadline = time.monotonic() + DEADLINE_TIMEOUTS * self.timeout_s
        for attempt in range(RETRIES + 1):
            try:
                data = self._read_once(offset, size, self.deadline)
                break
            except urllib.error.HTTPError as exc:
                exc.close()  # it holds the connection
                if exc.code == 416:  # asked past the end
                    data = b""
                    break
                raise self._http_error(exc.code) from None
            except OSError as exc:  # URLError, a timeout, a reset connection
                failed = request_failed(exc, self.filename, self.url, timeout_s=self.timeout_s)
                retry = attempt < RETRIES and time.monotonic() < self.deadline
                if retry and not isinstance(failed, OfflineError):  # offline: at once
                    continue
                raise failed from None
        self.bytes_fetched += len(data)
        return data

    def _read_once(self, offset: int, size: int, deadline: float) -> bytes:
        headers = {**auth_headers(), "Range": f"bytes={offset}-{offset + size - 1}"}
        with open_url(self.url, headers, timeout_s=self.timeout_s) as resp:
            if resp.status == 200 and offset > 0:
                raise HubError(f"The server does not support range requests for {self.filename}.")
            total = _RANGE_TOTAL.search(resp.headers.get("Content-Range", ""))
            if total:
                self._size = int(total.group(1))
            elif resp.status == 200:
                length = resp.headers.get("Content-Length", "")
                self._size = int(length) if length.isdigit() and len(length) <= 20 else None
            chunks, n = [], 0
            while n < size and (chunk := resp.read1(min(size - n, _READ_CHUNK))):
                chunks.append(chunk)
                n += len(chunk)
                if time.monotonic() > deadline:
                    raise HubError(
                        f"The Hub sent {self.filename} too slowly (it took more than "
                        f"{DEADLINE_TIMEOUTS * self.timeout_s:g} s).",
                        hint="Check the connection and try again.",
                    )
        return b"".join(chunks)

    def _http_error(self, code: int) -> HubError | ModelNotFoundError:
        if code in (401, 403):
            return HubError(
                f"{self.repo_id} refused access ({code}): it is gated or private.",
                hint="Accept its license on the Hub and set HF_TOKEN (or run `hf auth login`).",
            )
        if code == 404:
            return ModelNotFoundError(f"{self.repo_id} has no file {self.filename}.")
        if 300 <= code < 400:
            return HubError(f"The Hub redirected in a loop (or too many times) for {self.filename}.",
                            hint="Try again later; check HF_ENDPOINT.")  # fmt: skip
        return HubError(f"The Hub answered {code} for {self.filename}.", hint="Try again later.")


def read_remote_gguf_header(repo_id: str, filename: str, *, revision: str = "main") -> tuple[GGUFHeader, int]:
    """The header and tensor table of a GGUF on the Hub, and how many bytes that took."""
    src = HubFileSource(repo_id, filename, revision=revision)
    header = read_header(src)
    return header, src.bytes_fetched


def remote_model(repo_id: str, f: GGUFFile, *, revision: str = "main") -> ModelInfo:
    """ModelInfo of a (possibly split) GGUF on the Hub from its headers alone."""
    headers = [read_remote_gguf_header(repo_id, p, revision=revision)[0] for p in f.paths]
    return model_info_from_header(
        join_split_parts(headers, f.size_bytes), source=f"{repo_id}/{f.first}", source_kind="hf_gguf"
    )

"""A file on the Hugging Face Hub as a ``ByteSource``: HTTP range requests, so the advisor can read
a remote GGUF header (a few MB) and plan every quant file of a repo before downloading any.

Uses the stdlib HTTP client (redirects followed, which is how the Hub serves LFS files, without
the token once the host changes) and the user's token; see ``hub_http``.
"""

from __future__ import annotations

import re
import urllib.error

from app.core.errors import HubError, ModelNotFoundError
from app.core.hub.files import GGUFFile
from app.core.hub.http import auth_headers, hub_endpoint, open_url, resolve_url
from app.core.model.gguf_header import GGUFHeader, join_split_parts, read_header
from app.core.model.info import ModelInfo, model_info_from_header

__all__ = ["HubFileSource", "hub_endpoint", "read_remote_gguf_header"]

_RANGE_TOTAL = re.compile(r"/(\d+)$")


class HubFileSource:
    """``read(offset, size)`` over a Hub file; counts the bytes it fetched."""

    def __init__(
        self, repo_id: str, filename: str, *, revision: str = "main", timeout_s: float = 30.0
    ) -> None:
        self.repo_id, self.filename = repo_id, filename
        self.url = resolve_url(repo_id, filename, revision)
        self.timeout_s = timeout_s
        self.bytes_fetched = 0
        self._size: int | None = None

    @property
    def size(self) -> int | None:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        headers = {**auth_headers(), "Range": f"bytes={offset}-{offset + size - 1}"}
        try:
            with open_url(self.url, headers, timeout_s=self.timeout_s) as resp:
                if resp.status == 200 and offset > 0:
                    raise HubError(f"The server does not support range requests for {self.filename}.")
                total = _RANGE_TOTAL.search(resp.headers.get("Content-Range", ""))
                if total:
                    self._size = int(total.group(1))
                elif resp.status == 200:
                    self._size = int(resp.headers.get("Content-Length", 0)) or None
                data: bytes = resp.read(size)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # asked past the end
                return b""
            if exc.code in (401, 403):
                raise HubError(
                    f"{self.repo_id} refused access ({exc.code}): it is gated or private.",
                    hint="Accept its license on the Hub and set HF_TOKEN (or run `hf auth login`).",
                ) from None
            if exc.code == 404:
                raise ModelNotFoundError(f"{self.repo_id} has no file {self.filename}.") from None
            raise HubError(f"The Hub answered {exc.code} for {self.filename}.") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise HubError(
                f"Could not reach the Hub for {self.repo_id} ({exc.__class__.__name__}).",
                hint="Check the connection and try again.",
            ) from None
        self.bytes_fetched += len(data)
        return data


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

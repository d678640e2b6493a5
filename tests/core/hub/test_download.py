"""Resumable, verified downloads against a local fake Hub serving a real GGUF file."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from app.core.errors import Cancelled, HubError, NetworkError, OfflineError
from app.core.hub.download import DownloadCorruptError, download
from tests.fake_hub import fake_hub, hanging_up_server, unused_port

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def model_bytes(smollm2_path: Path) -> bytes:
    return smollm2_path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_is_verified(tmp_path: Path, model_bytes: bytes) -> None:
    seen = []
    with fake_hub({"acme/smol": {FILE: model_bytes}}) as url:
        out = download(f"{url}/acme/smol/resolve/main/{FILE}", tmp_path / FILE, expected_sha256=_sha(model_bytes),
                       on_progress=seen.append)  # fmt: skip
    assert out.read_bytes() == model_bytes
    assert seen[-1].done_bytes == len(model_bytes) == seen[-1].total_bytes
    assert not (tmp_path / f"{FILE}.part").exists()


def test_dropped_connection_resumes_and_ends_verified(tmp_path: Path, model_bytes: bytes) -> None:
    requests: list[str] = []
    with fake_hub(
        {"acme/smol": {FILE: model_bytes}}, drop_after={FILE: 30_000_000}, requests=requests
    ) as url:
        out = download(
            f"{url}/acme/smol/resolve/main/{FILE}", tmp_path / FILE, expected_sha256=_sha(model_bytes)
        )
    assert _sha(out.read_bytes()) == _sha(model_bytes)
    gets = [r for r in requests if r.startswith("GET /cdn-lfs/")]  # the Hub redirects files to its CDN
    assert len(gets) == 2 and gets[1].endswith("bytes=30000000-")  # resumed, not restarted


def test_cancel_keeps_the_partial_file_and_the_next_call_resumes(tmp_path: Path, model_bytes: bytes) -> None:
    cancel = threading.Event()
    requests: list[str] = []

    def stop_early(p: object) -> None:
        if p.done_bytes > 10_000_000:  # type: ignore[attr-defined]
            cancel.set()

    with fake_hub({"acme/smol": {FILE: model_bytes}}, requests=requests) as url:
        src = f"{url}/acme/smol/resolve/main/{FILE}"
        with pytest.raises(Cancelled):
            download(
                src,
                tmp_path / FILE,
                expected_sha256=_sha(model_bytes),
                on_progress=stop_early,
                cancel=cancel,
                progress_interval_s=0,  # report every chunk: on loopback the whole file takes < 0.1 s
            )
        part = tmp_path / f"{FILE}.part"
        assert part.exists() and 10_000_000 < part.stat().st_size < len(model_bytes)
        assert not (tmp_path / FILE).exists()  # nothing half-finished is presented as the model
        out = download(src, tmp_path / FILE, expected_sha256=_sha(model_bytes))
    assert out.read_bytes() == model_bytes
    assert "bytes=" in requests[-1]  # the second call resumed with a Range request


def test_corrupted_byte_is_detected_and_nothing_is_kept(tmp_path: Path, model_bytes: bytes) -> None:
    bad = bytearray(model_bytes)
    bad[len(bad) // 2] ^= 0xFF
    with (
        fake_hub({"acme/smol": {FILE: bytes(bad)}}) as url,
        pytest.raises(DownloadCorruptError, match="SHA-256"),
    ):
        download(f"{url}/acme/smol/resolve/main/{FILE}", tmp_path / FILE, expected_sha256=_sha(model_bytes))
    assert not (tmp_path / FILE).exists() and not (tmp_path / f"{FILE}.part").exists()


def test_missing_file_and_unreachable_server(tmp_path: Path) -> None:
    with fake_hub({"acme/smol": {}}) as url, pytest.raises(HubError, match="404"):
        download(f"{url}/acme/smol/resolve/main/{FILE}", tmp_path / FILE, retries=0)
    with hanging_up_server() as url, pytest.raises(NetworkError, match="failed after 1 retries") as caught:
        download(f"{url}/x.gguf", tmp_path / "x.gguf", retries=1)
    assert "the server closed the connection" in str(caught.value)  # in words, not a class name
    t0 = time.perf_counter()
    with pytest.raises(OfflineError):  # nothing listens there: said at once, no retries
        download(f"http://127.0.0.1:{unused_port()}/x.gguf", tmp_path / "x.gguf", retries=5)
    assert time.perf_counter() - t0 < 1.5

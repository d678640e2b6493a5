"""Offline is said at once and in words: every Hub entry point, pointed at a host that does not
resolve (``.invalid`` never does: RFC 2606) or a port nobody listens on, raises OfflineError within
a second; a resolver that hangs is cut off at its deadline; the verdict is probed once and cached;
and when the Hub comes back, the same calls work again (a download resumes its partial file)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.core.errors import Cancelled, NetworkError, OfflineError
from app.core.hub import online
from app.core.hub.api import list_tree, repo_commit, repo_file
from app.core.hub.download import download
from app.core.hub.repo import list_gguf_files, search_models
from app.core.model.remote import read_remote_gguf_header
from app.core.model.source import load_model
from tests.fake_hub import fake_hub, hanging_up_server, unused_port

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"
UNRESOLVABLE = "http://tailorlm-offline.invalid"
OFFLINE_S = 1.5  # the verdict's own bound is RESOLVE_TIMEOUT_S (1 s); the rest is slack for 2 cores
CLASS_NAMES = ("Error", "gaierror", "Errno", "Exception", "urllib", "socket.")
ENTRY_POINTS: dict[str, Callable[[], object]] = {
    "search": lambda: search_models("smol"),
    "files": lambda: list_gguf_files("acme/smol-GGUF"),
    "tree": lambda: list_tree("acme/smol-GGUF", "main"),
    "commit": lambda: repo_commit("acme/smol-GGUF", "main"),
    "config": lambda: repo_file("acme/smol", "config.json"),
    "remote header": lambda: read_remote_gguf_header("acme/smol-GGUF", SMOL),
    "advise a repo": lambda: load_model("acme/some-model"),
    "advise a Hub file": lambda: load_model(f"acme/smol-GGUF/{SMOL}"),
}


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in online.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    online.forget()
    yield
    online.forget()  # a verdict about a port that a later test's server may get


def _in_words(text: str) -> None:
    assert not any(name in text for name in CLASS_NAMES), text


def _timed_offline(call: Callable[[], object]) -> tuple[OfflineError, float]:
    t0 = time.perf_counter()
    with pytest.raises(OfflineError) as caught:
        call()
    return caught.value, time.perf_counter() - t0


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_says_offline_within_a_second(monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", UNRESOLVABLE)
    err, took_s = _timed_offline(ENTRY_POINTS[entry])
    assert took_s < OFFLINE_S, took_s
    assert str(err) == "You're offline — your local models still work."
    assert err.hint is not None and "tailorlm-offline.invalid" in err.hint and "does not resolve" in err.hint
    _in_words(err.user_message())


def test_a_port_nobody_listens_on_is_offline_too(monkeypatch: pytest.MonkeyPatch) -> None:
    port = unused_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    err, took_s = _timed_offline(lambda: search_models("smol"))
    assert took_s < OFFLINE_S
    assert err.hint is not None and f"127.0.0.1:{port}" in err.hint and "refused" in err.hint
    _in_words(err.user_message())


def test_a_hanging_resolver_is_cut_off_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout of its own: a resolver with no server waits 5 s per try."""
    real = socket.getaddrinfo
    released = threading.Event()

    def slow(host: str, *args: object, **kwargs: object) -> object:
        if host.endswith(".invalid"):
            released.wait(10)  # a dead name server
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setenv("HF_ENDPOINT", UNRESOLVABLE)
    try:
        err, took_s = _timed_offline(lambda: search_models("smol"))
    finally:
        released.set()  # let the abandoned resolver thread end
    assert online.RESOLVE_TIMEOUT_S <= took_s < online.RESOLVE_TIMEOUT_S + 0.5, took_s
    assert err.hint is not None and "did not resolve within 1 s" in err.hint


def test_the_verdict_is_probed_once_then_cached_and_a_fresh_one_probes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes: list[str] = []
    real = socket.getaddrinfo

    def counting(host: str, *args: object, **kwargs: object) -> object:
        probes.append(host)
        time.sleep(0.2)  # long enough that concurrent callers overlap
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    monkeypatch.setenv("HF_ENDPOINT", UNRESOLVABLE)
    verdicts: list[online.Verdict] = []
    threads = [threading.Thread(target=lambda: verdicts.append(online.hub_verdict())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(verdicts) == 6 and not any(v.online for v in verdicts)
    assert probes == ["tailorlm-offline.invalid"]  # six callers at once, one resolve
    t0 = time.perf_counter()
    for call in ENTRY_POINTS.values():  # a search, a listing, a header read: all from the cache
        with pytest.raises(OfflineError):
            call()
    assert len(probes) == 1 and time.perf_counter() - t0 < 0.5
    assert not online.hub_verdict(fresh=True).online and len(probes) == 2  # Retry asks afresh
    monkeypatch.setattr(online, "OFFLINE_TTL_S", 0.0)  # the failure verdict expired
    online.hub_verdict()
    assert len(probes) == 3


def test_a_reachable_hub_is_cached_for_longer_and_requests_go_through(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        first = online.hub_verdict()
        assert first.online and first.reason == ""
        assert [m.repo_id for m in search_models("smol")] == ["acme/smol-GGUF"]
        assert online.hub_verdict() is first  # the search asked the cache, not the network
        assert len(requests) == 1


def test_hf_hub_offline_means_offline_at_once_and_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: b"GGUF"}}, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        err, took_s = _timed_offline(lambda: search_models("smol"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "no")  # huggingface_hub's rule: only 1/ON/YES/TRUE
        assert search_models("smol")
    assert took_s < 0.1 and len(requests) == 1
    assert err.hint is not None and "HF_HUB_OFFLINE" in err.hint


def test_a_proxy_that_is_down_is_what_makes_us_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy the Hub's host is the proxy's business: the proxy is what must answer."""
    proxy_port = unused_port()
    with fake_hub({"acme/smol-GGUF": {SMOL: b"GGUF"}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        verdict = online.hub_verdict()
        assert not verdict.online and verdict.host == f"127.0.0.1:{proxy_port}"
        monkeypatch.setenv("no_proxy", "127.0.0.1")  # the Hub is exempt: its own host is asked
        assert online.hub_verdict(fresh=True).online


def test_a_request_that_fails_on_a_live_host_says_what_happened(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host accepts connections (so we are online) but hangs up on every request."""
    with hanging_up_server() as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(NetworkError) as caught:
            search_models("smol")
    assert not isinstance(caught.value, OfflineError)
    assert "the server closed the connection" in str(caught.value)
    _in_words(caught.value.user_message())


def test_network_exceptions_that_escaped_are_put_into_words() -> None:
    raised: list[BaseException] = []
    for call in (
        lambda: urllib.request.urlopen(f"{UNRESOLVABLE}/", timeout=2),
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{unused_port()}/", timeout=2),
        lambda: _httpx_get(f"{UNRESOLVABLE}/"),
    ):
        try:
            call()
        except Exception as exc:
            raised.append(exc)
    assert len(raised) == 3
    dns, refused, httpx_dns = (online.as_network_error(e) for e in raised)
    assert isinstance(dns, OfflineError) and isinstance(httpx_dns, OfflineError)
    assert "ConnectError" in repr(raised[2])  # what the issue saw, and what no one sees now
    assert isinstance(refused, NetworkError) and "refused" in str(refused)
    for err in (dns, refused, httpx_dns):
        assert err is not None
        _in_words(err.user_message())
    assert online.as_network_error(FileNotFoundError(2, "No such file or directory")) is None
    assert online.as_network_error(ValueError("bad")) is None


def test_a_download_offline_keeps_its_partial_file_and_resumes_when_the_hub_is_back(
    tmp_path: Path, smollm2_path: Path
) -> None:
    data = smollm2_path.read_bytes()
    port = unused_port()
    dest = tmp_path / SMOL
    cancel = threading.Event()
    src = f"http://127.0.0.1:{port}/acme/smol-GGUF/resolve/main/{SMOL}"

    def stop_early(p: object) -> None:
        if p.done_bytes > 10_000_000:  # type: ignore[attr-defined]
            cancel.set()

    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    with fake_hub({"acme/smol-GGUF": {SMOL: data}}, port=port), pytest.raises(Cancelled):
        download(src, dest, expected_sha256=sha, on_progress=stop_early, cancel=cancel, progress_interval_s=0)
    part = tmp_path / f"{SMOL}.part"
    kept = part.stat().st_size
    err, took_s = _timed_offline(lambda: download(src, dest, expected_sha256=sha))  # the Hub is gone
    assert took_s < OFFLINE_S and part.stat().st_size == kept and not dest.exists()
    _in_words(err.user_message())
    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: data}}, port=port, requests=requests):  # back online
        out = download(src, dest, expected_sha256=sha)
    assert out.read_bytes() == data
    assert requests[-1].endswith(f"bytes={kept}-")  # resumed, not restarted


def _httpx_get(url: str) -> object:
    import httpx2  # huggingface_hub's client: its ConnectError is what the issue showed

    return httpx2.get(url, timeout=2)

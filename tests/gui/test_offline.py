"""The Library panel with no network: a Hub search says "You're offline — your local models still
work" within a second, once (its status line, not the window's banner too) and in words; a
download asked for offline — from the Hub tab or the Advisor's "Download … and chat" — stays in the
queue waiting for the network with Retry and Remove, and finishes once the Hub is back (Retry, or
by itself). The Hub is the local fake Hub, started on a port that was down a moment before."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.hub import online
from app.core.hub.repo import list_gguf_files
from app.gui.panels.library import LibraryPanel
from app.gui.panels.library_downloads import WAITING, DownloadRow
from app.gui.workers import describe_error
from tests.fake_hub import fake_hub, unused_port

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"
OFFLINE = "You're offline — your local models still work."
SHOWN_WITHIN_S = 1.5
CLASS_NAMES = ("Error", "gaierror", "Errno", "Exception", "urllib")


@pytest.fixture(autouse=True)
def _fresh_verdicts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in online.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    online.forget()
    yield
    online.forget()


@pytest.fixture
def panel(library_panel: LibraryPanel) -> LibraryPanel:
    return library_panel


@pytest.fixture
def banner(panel: LibraryPanel) -> list[tuple[str, str]]:
    """What reached the window's error banner."""
    seen: list[tuple[str, str]] = []
    panel.ctx.error.connect(lambda m, h: seen.append((m, h)))
    return seen


def _search_offline(panel: LibraryPanel, qtbot: QtBot) -> float:
    panel.hub.query.setText("smol")
    t0 = time.perf_counter()
    panel.hub.query.returnPressed.emit()
    qtbot.waitUntil(lambda: OFFLINE in panel.hub.status.text(), timeout=10_000)
    return time.perf_counter() - t0


def _in_words(text: str) -> None:
    assert not any(name in text for name in CLASS_NAMES), text


def test_a_search_offline_says_so_within_a_second_once_and_in_words(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, banner: list[tuple[str, str]]
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://tailorlm-offline.invalid")  # .invalid never resolves
    took_s = _search_offline(panel, qtbot)
    print(f"\nGUI search → offline message: {took_s * 1000:.0f} ms")
    assert took_s < SHOWN_WITHIN_S
    text = panel.hub.status.text()
    assert text.startswith(OFFLINE) and "tailorlm-offline.invalid" in text and "failed" not in text
    _in_words(text)
    assert banner == []  # once: the status line under the search, not the banner as well
    took_s = _search_offline(panel, qtbot)  # again: the cached verdict answers
    assert took_s < 0.5


def test_a_hanging_resolver_still_gives_the_message_within_a_second(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    released = threading.Event()

    def dead_name_server(host: str, *args: object, **kwargs: object) -> object:
        if host.endswith(".invalid"):
            released.wait(10)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", dead_name_server)
    monkeypatch.setenv("HF_ENDPOINT", "http://tailorlm-offline.invalid")
    try:
        took_s = _search_offline(panel, qtbot)
    finally:
        released.set()
    print(f"\nGUI search, hanging resolver → offline message: {took_s * 1000:.0f} ms")
    assert took_s < SHOWN_WITHIN_S
    assert "did not resolve within 1 s" in panel.hub.status.text()


def test_the_advisors_download_offline_waits_in_the_queue_and_retry_finishes_it(
    panel: LibraryPanel,
    qtbot: QtBot,
    monkeypatch: pytest.MonkeyPatch,
    banner: list[tuple[str, str]],
    smollm2_path: Path,
) -> None:
    port = unused_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")  # the Hub is down
    opened: list[tuple[str, dict[str, object]]] = []
    panel.ctx.open_chat.connect(lambda path, load: opened.append((path, load)))
    t0 = time.perf_counter()
    panel.pull({"repo_id": "acme/smol-GGUF", "quant": "Q4_1", "n_ctx": 2048, "n_gpu_layers": 0})
    qtbot.waitUntil(lambda: len(panel.downloads.rows) == 1, timeout=10_000)
    [row] = panel.downloads.rows
    took_s = time.perf_counter() - t0
    print(f"\nGUI download-and-chat → waiting row: {took_s * 1000:.0f} ms")
    assert took_s < SHOWN_WITHIN_S
    _assert_waiting(row)
    assert "acme/smol-GGUF / Q4_1" in row.title.text()
    assert banner == []  # the row says it; nothing shouts
    assert panel.downloads.empty.isHidden()

    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, port=port):  # back online
        row.resume_button.click()  # Retry
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=30_000)
        assert row.state == "verified", row.status.text()
        qtbot.waitUntil(lambda: bool(opened), timeout=10_000)  # and the chat opens, as asked
    assert row.title.text() == f"acme/smol-GGUF / {SMOL}"
    path, load = opened[0]
    assert Path(path).is_file() and load == {"n_ctx": 2048, "n_gpu_layers": 0}


def test_a_chosen_file_whose_download_finds_no_network_waits_and_retry_resumes(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    port = unused_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, port=port):
        [repo_file] = list_gguf_files("acme/smol-GGUF")  # listed while online (the Hub tab)
    online.forget()  # the link just went: the cached "online" no longer holds
    row: DownloadRow = panel.downloads.enqueue("acme/smol-GGUF", repo_file)
    qtbot.waitUntil(lambda: row.state != "downloading", timeout=10_000)
    _assert_waiting(row)
    assert row in panel.downloads.rows  # never dropped: the queue is not an empty box
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, port=port):
        row.resume_button.click()
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=30_000)
    assert row.state == "verified", row.status.text()


def test_a_waiting_download_continues_by_itself_when_the_hub_is_back(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    monkeypatch.setattr(online, "OFFLINE_TTL_S", 0.2)  # instead of 10 s: the row retries after 0.4 s
    monkeypatch.setattr("app.gui.panels.library_downloads.AUTO_RETRY_MARGIN_S", 0.2)
    port = unused_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    panel.pull({"repo_id": "acme/smol-GGUF", "quant": "Q4_1"})
    qtbot.waitUntil(lambda: len(panel.downloads.rows) == 1, timeout=10_000)
    [row] = panel.downloads.rows
    qtbot.waitUntil(lambda: row.state == "waiting", timeout=10_000)
    qtbot.wait(1000)  # a few retries by itself, each still offline
    assert row.state in ("waiting", "queued", "downloading")
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, port=port):
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=30_000)
    assert row.state == "verified", row.status.text()


def test_remove_takes_a_waiting_download_off_the_list(
    panel: LibraryPanel, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not panel.downloads.empty.isHidden()  # an empty queue says what goes in it
    monkeypatch.setenv("HF_ENDPOINT", "http://tailorlm-offline.invalid")
    panel.pull({"repo_id": "acme/smol-GGUF", "filename": SMOL})
    qtbot.waitUntil(lambda: len(panel.downloads.rows) == 1, timeout=10_000)
    [row] = panel.downloads.rows
    _assert_waiting(row)
    assert row.retry_timer.isActive()
    row.clear_button.click()
    assert panel.downloads.rows == [] and not row.retry_timer.isActive()
    assert not panel.downloads.empty.isHidden()


def test_a_raw_network_exception_reaches_the_window_in_words() -> None:
    """The generic path ("Something went wrong: …") never shows a network failure's class name."""
    import urllib.request

    try:
        urllib.request.urlopen("http://tailorlm-offline.invalid/", timeout=2)
    except OSError as exc:
        message, hint = describe_error(exc)
    assert message == OFFLINE and "Something went wrong" not in message
    _in_words(f"{message} {hint}")


def _assert_waiting(row: DownloadRow) -> None:
    assert row.state == "waiting", row.status.text()
    assert row.status.text() == WAITING
    assert not row.resume_button.isHidden() and row.resume_button.text() == "Retry"
    assert not row.clear_button.isHidden() and row.cancel_button.isHidden()
    _in_words(row.status.text() + row.status.toolTip())

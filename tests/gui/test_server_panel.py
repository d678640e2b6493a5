"""The Server panel on SmolLM2 in a real model process: the switch serves the chat's model through
the chat's own process (an HTTP request answered while the chat answers too), the address copies,
the log and the rates count the request, stopping frees the port, a new chat model restarts the
server and no model stops it, other devices need a key (refused without one, never saved), and the
window's close stops the server. The words and rows come from the Qt-free view module."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QComboBox, QLineEdit, QPushButton, QSpinBox, QTableWidget
from pytestqt.qtbot import QtBot

from app.engine import protocol as P
from app.engine.client import EngineClient
from app.gui.context import AppContext, ChatModel
from app.gui.panels import server_view as view
from app.gui.panels.server import PORT_KEY, ServerPanel
from app.gui.workers import running_workers, wait_for_workers
from app.server.stats import Rates, RequestRecord

WAIT_MS = 60_000  # a start takes ~0.1 s; the chat's load (plan, hardware probe) far longer
HTTP_TIMEOUT_S = 120


@pytest.fixture
def ctx(tmp_path: Path) -> AppContext:
    return AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def engine(smollm2_path: Path) -> Iterator[EngineClient]:
    """A model process with SmolLM2 loaded, as the chat's is: one thread, a small context."""
    client = EngineClient()
    client.load(P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=1))
    yield client
    client.close()


def _chat_model(engine: EngineClient, path: Path, label: str = "SmolLM2 test") -> ChatModel:
    """What the Chat panel hands over once ``engine`` has loaded the model at ``path``."""
    return ChatModel(engine, P.Load(model_path=str(path), n_ctx=1024, n_threads=1), label)


@pytest.fixture
def make_panel(qtbot: QtBot, ctx: AppContext) -> Iterator[Callable[[], ServerPanel]]:
    """Builds the panel when the test says (after the chat's model, as the window builds it late);
    every panel is shut down after the test, its server stopped."""
    made: list[ServerPanel] = []

    def make() -> ServerPanel:
        panel = ServerPanel(ctx)
        qtbot.addWidget(panel)
        panel.resize(900, 600)
        panel.show()
        panel.port.setValue(0)  # "Any free port": tests never clash over 8080
        made.append(panel)
        return panel

    yield make
    for panel in made:
        panel.shutdown()
    wait_for_workers(10_000)


def _serve(panel: ServerPanel, qtbot: QtBot) -> str:
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "on", timeout=WAIT_MS)
    return panel.url_label.text()


def _port(url: str) -> int:
    port = view.port_of(url)
    assert port
    return port


def _post_chat(url: str, text: str = "Say hello.") -> tuple[int, dict[str, Any]]:
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 4, "temperature": 0}
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return response.status, json.load(response)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_serving_answers_a_request_logs_it_copies_the_address_and_frees_the_port(
    ctx: AppContext,
    engine: EngineClient,
    make_panel: Callable[[], ServerPanel],
    qtbot: QtBot,
    smollm2_path: Path,
) -> None:
    ctx.set_chat_model(_chat_model(engine, smollm2_path))  # before the panel is built: it reads the latest
    panel = make_panel()
    assert "SmolLM2 test" in panel.model_label.text() and not panel.open_chat_button.isVisible()
    assert panel.switch.isEnabled() and panel.switch.text() == "&Serve"
    assert panel.port.text() == view.ANY_PORT and panel.host.currentIndex() == 0
    pid = engine.pid
    url = _serve(panel, qtbot)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1") and _port(url) > 0
    assert panel.switch.isChecked() and panel.switch.text() == "&Stop serving"
    assert panel.url_label.isVisible() and panel.example.text() == f"curl {url}/models"
    assert not panel.port.isEnabled() and not panel.host.isEnabled()
    assert int(ctx.settings.value(PORT_KEY)) == 0  # type: ignore[call-overload]  # remembered

    status, answer = _post_chat(url)
    assert status == 200 and answer["choices"][0]["message"]["role"] == "assistant"
    n_out = answer["usage"]["completion_tokens"]
    assert 1 <= n_out <= 4
    assert engine.pid == pid  # answered by the chat's own process, not a second one
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=5000)  # the timer's refresh
    row = [panel.table.item(0, c).text() for c in range(panel.table.columnCount())]
    assert row[1] == "POST /v1/chat/completions" and row[2] == "200"
    assert row[3] == f"{answer['usage']['prompt_tokens']} / {n_out}"
    assert row[6].endswith(("ms", "s")) and row[7] != view.UNKNOWN
    assert "total 1 · errors 0" in panel.rates.text() and "req/s" in panel.rates.text()

    panel.copy_button.click()
    assert QGuiApplication.clipboard().text() == url

    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "off", timeout=WAIT_MS)
    assert _refused(_port(url))  # the port is free again
    assert (
        not panel.switch.isChecked() and panel.switch.isEnabled() and panel.status.text() == view.NOT_SERVING
    )
    assert not panel.url_label.isVisible() and not panel._timer.isActive()
    assert engine.loaded is not None  # the chat's model stays loaded


def test_other_devices_need_a_key_which_is_never_saved(
    ctx: AppContext,
    engine: EngineClient,
    make_panel: Callable[[], ServerPanel],
    qtbot: QtBot,
    tmp_path: Path,
    smollm2_path: Path,
) -> None:
    ctx.set_chat_model(_chat_model(engine, smollm2_path))
    panel = make_panel()
    assert not panel.key.isEnabled() and not panel.generate.isEnabled()  # only this computer: no key
    panel.host.setCurrentIndex(1)
    assert panel.network() and panel.key.isEnabled() and panel.key.text() == ""
    with qtbot.waitSignal(ctx.error, timeout=1000) as said:
        panel.switch.click()
    message, hint = said.args
    assert "needs an API key" in message and hint == view.KEY_HINT
    assert panel.state == "off" and not panel.switch.isChecked() and not running_workers()
    assert "needs an API key" in panel.status.text()

    panel.generate.click()
    key = panel.key.text()
    assert len(key) >= 40 and panel.key.echoMode() == QLineEdit.EchoMode.Password
    panel.show_key.click()
    assert panel.key.echoMode() == QLineEdit.EchoMode.Normal and panel.show_key.text() == "Hi&de"
    assert "never saved" in panel.key.toolTip()

    url = _serve(panel, qtbot)  # with the key: other devices (and this one) may connect
    assert url.startswith("http://0.0.0.0:") and "network address" in panel.status.text()
    assert panel.example.text() == f'curl -H "Authorization: Bearer YOUR_KEY" {url}/models'
    local = url.replace("0.0.0.0", "127.0.0.1")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{local}/models", timeout=HTTP_TIMEOUT_S)
    assert refused.value.code == 401
    refused.value.close()  # its response, and the connection under it
    asked = urllib.request.Request(f"{local}/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(asked, timeout=HTTP_TIMEOUT_S) as response:
        assert response.status == 200
    panel.switch.click()
    qtbot.waitUntil(lambda: panel.state == "off", timeout=WAIT_MS)
    ctx.settings.sync()
    assert key not in (tmp_path / "settings.ini").read_text(encoding="utf-8")  # only the port is kept


def test_the_switch_follows_the_chats_model(
    ctx: AppContext,
    engine: EngineClient,
    make_panel: Callable[[], ServerPanel],
    qtbot: QtBot,
    smollm2_path: Path,
) -> None:
    panel = make_panel()  # the chat has no model yet
    assert not panel.switch.isEnabled() and panel.status.text() == view.NO_MODEL_SHORT
    assert panel.open_chat_button.isVisible()
    with qtbot.waitSignal(ctx.show_panel) as asked:
        panel.open_chat_button.click()
    assert asked.args == ["chat"]

    ctx.set_chat_model(_chat_model(engine, smollm2_path, "first"))
    assert panel.switch.isEnabled() and "first" in panel.model_label.text()
    first_url = _serve(panel, qtbot)
    first = panel.running

    ctx.set_chat_model(
        _chat_model(engine, smollm2_path, "second")
    )  # the chat loaded another model: serve that
    qtbot.waitUntil(lambda: panel.state == "on" and panel.running is not first, timeout=WAIT_MS)
    url = panel.url_label.text()
    assert url == first_url and "second" in panel.model_label.text()  # the same address, the new model
    assert _post_chat(url)[0] == 200
    ctx.set_chat_model(None)  # the chat's model is gone: so is the server
    qtbot.waitUntil(lambda: panel.state == "off", timeout=WAIT_MS)
    assert panel.status.text() == view.MODEL_GONE and not panel.switch.isEnabled()
    assert panel.running is None and _refused(_port(url))


def test_closing_the_window_stops_the_server(
    ctx: AppContext,
    engine: EngineClient,
    make_panel: Callable[[], ServerPanel],
    qtbot: QtBot,
    smollm2_path: Path,
) -> None:
    ctx.set_chat_model(_chat_model(engine, smollm2_path))
    panel = make_panel()
    url = _serve(panel, qtbot)
    panel.shutdown()  # what the window's close does
    assert _refused(_port(url)) and panel.control.running is None
    assert not running_workers() and not panel._timer.isActive()
    assert engine.loaded is not None  # the chat's process is the chat's to end


def test_the_chat_hands_its_model_over_and_shares_its_process(
    ctx: AppContext, make_panel: Callable[[], ServerPanel], qtbot: QtBot, smollm2_path: Path
) -> None:
    from app.gui.panels.chat import ChatPanel

    chat = ChatPanel(ctx, n_threads=1)
    qtbot.addWidget(chat)
    try:
        chat.settings_panel.max_tokens.setValue(8)
        ctx.open_chat.emit(str(smollm2_path), {"n_ctx": 1024, "n_gpu_layers": 0, "type_k": "F16"})
        qtbot.waitUntil(lambda: chat.state == "ready", timeout=WAIT_MS)
        shared = ctx.chat_model
        assert shared is not None and chat.model is not None
        assert shared.client is chat.engine.client and shared.label == chat.model.label
        assert shared.load == chat.model.load
        panel = make_panel()  # built after the load, as when the user opens it later
        assert chat.model.label in panel.model_label.text().replace("\u200b", "")
        url = _serve(panel, qtbot)
        pid = chat.engine.client.pid

        answers: list[int] = []  # an HTTP request while the chat answers: they take turns
        http = threading.Thread(target=lambda: answers.append(_post_chat(url)[0]))
        http.start()
        chat.input.setPlainText("Hello!")
        chat.send()
        qtbot.waitUntil(lambda: chat.state == "ready" and not http.is_alive(), timeout=WAIT_MS)
        http.join()
        assert answers == [200] and chat.view.answer_text().strip()
        assert chat.engine.client.pid == pid  # one model process served both
    finally:
        chat.shutdown()  # the chat's model is gone: the server stops
    assert ctx.chat_model is None
    qtbot.waitUntil(lambda: panel.state == "off", timeout=WAIT_MS)
    assert _refused(_port(url))


def test_every_control_is_named(ctx: AppContext, make_panel: Callable[[], ServerPanel]) -> None:
    panel = make_panel()
    kinds = (QPushButton, QComboBox, QSpinBox, QLineEdit, QTableWidget)
    controls = [w for kind in kinds for w in panel.findChildren(kind) if not w.objectName().startswith("qt_")]
    assert len(controls) >= 8
    assert all(w.accessibleName() for w in controls), [w for w in controls if not w.accessibleName()]


# --- the view, without Qt -------------------------------------------------------------------------


def test_the_view_words_and_rows() -> None:
    assert view.rates_text(Rates(0.3, 12.34, 7, 1)) == "0.3 req/s · 12.3 tok/s · total 7 · errors 1"
    done = RequestRecord(1_700_000_000.0, "POST", "/v1/chat/completions", 200, "127.0.0.1:5000", 2.345,
                         prompt_tokens=31, completion_tokens=4, ttft_ms=84.4, gen_tok_s=40.04, outcome="length")  # fmt: skip
    refused = RequestRecord(1_700_000_001.0, "GET", "/v1/models", 401, "127.0.0.1:5001", 0.0021, outcome="")
    rows = view.log_rows([done, refused])
    assert [r[1] for r in rows] == ["GET /v1/models", "POST /v1/chat/completions"]  # newest first
    assert rows[1][2:] == ("200", "31 / 4", "40.0", "84 ms", "2.3 s", "length")
    assert rows[0][2:] == ("401", "—", "—", "—", "2 ms", "—")  # not measured: never 0
    assert len(rows[0][0]) == len("12:34:56")
    assert view.example_command("http://h:1/v1", with_key=True) == (
        'curl -H "Authorization: Bearer YOUR_KEY" http://h:1/v1/models'
    )
    assert "0.0.0.0" in view.serving_text(network=True) and "0.0.0.0" not in view.serving_text(network=False)
    assert view.duration_text(0.0004) == "<1 ms" and view.port_of("http://127.0.0.1:8080/v1") == 8080
    assert view.model_text("SmolLM2 · Q8_0", 4096) == "SmolLM2 · Q8_0 · 4,096-token context (loaded in Chat)"

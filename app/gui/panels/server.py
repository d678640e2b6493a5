"""The Server panel: the switch that serves the Chat panel's model to other programs through an
OpenAI-compatible API (what ``tailorlm serve`` does in a terminal), its address to copy, and a live
log of the requests with their rates.

It serves through the chat's own model process and plan (``AppContext.chat_model``): chat turns
and HTTP requests take turns on one queue. A new model in Chat restarts the server on it; no model
there stops it. Starting and stopping run on the panel's worker lane, in the order they were asked
for (:mod:`app.gui.panels.server_control`); the words and rows come from the Qt-free
:mod:`app.gui.panels.server_view`. The API key lives in memory only: never in the settings.
"""

from __future__ import annotations

import secrets
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.context import AppContext, ChatModel
from app.gui.panels import server_view as view
from app.gui.panels.server_control import ServerControl
from app.gui.widgets.live_region import announce
from app.gui.widgets.wrapping import breakable
from app.gui.workers import Lane, discard_workers, start_worker
from app.server.run import DEFAULT_PORT, RunningServer, ServerError, check_address

PORT_KEY = "server/port"  # the port served last; the address choice is not kept: local by default
REFRESH_MS = 1000  # the log and the rates refresh once a second, while serving and on screen
KEY_BYTES = 32  # secrets.token_urlsafe's default strength: 43 characters
SHUTDOWN_TIMEOUT_MS = 15_000  # RunningServer.stop waits up to 10 s for running requests


def _label(text: str, name: str, *, selectable: bool = False) -> QLabel:
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)  # an error's words or a URL: never read as markup
    if selectable:
        label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
    return label


def _button(text: str, name: str) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(name)
    return button


class ServerPanel(QWidget):
    """Serve the chat's model over HTTP; see the module docstring. ``shutdown()`` stops serving."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.model: ChatModel | None = ctx.chat_model  # built late: the chat may have loaded already
        self.state = "off"  # "off" | "starting" | "on" | "stopping"
        self.running: RunningServer | None = None
        self.control = ServerControl()
        # a lane, not the pool: a restart (stop, then start) must never overtake the stop before it
        self._lane = Lane("server", parent=self)
        self._job = 0  # the latest start or stop asked for: earlier ones' results are superseded
        self._shown_total = -1  # requests in the log as shown: redrawn only when more came
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        ctx.chat_model_changed.connect(self._on_chat_model)
        self._show_model()
        self._update()

    # --- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.model_label = _label("", "Model served", selectable=True)
        self.open_chat_button = _button("Open &Chat", "Open the Chat panel to load a model")
        self.open_chat_button.clicked.connect(lambda: self.ctx.show_panel.emit("chat"))
        model_row = QWidget()  # a widget, not a layout: the form gives the wrapped label its lines
        row = QHBoxLayout(model_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.model_label, 1)
        row.addWidget(self.open_chat_button)
        form.addRow("Model:", model_row)

        self.host = QComboBox()
        self.host.setAccessibleName("Who can connect")
        for host, title in view.HOSTS:
            self.host.addItem(title, host)
        self.host.currentIndexChanged.connect(lambda _i: self._update())
        form.addRow("&Who can connect:", self.host)

        self.key = QLineEdit()
        self.key.setAccessibleName("API key")
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("Needed for other devices")
        self.key.setToolTip(view.KEY_TIP)
        self.show_key = _button("S&how", "Show the API key")
        self.show_key.setCheckable(True)
        self.show_key.toggled.connect(self._show_key)
        self.generate = _button("&Generate", "Generate an API key")
        self.generate.setToolTip(view.KEY_TIP)
        self.generate.clicked.connect(self.generate_key)
        key_row = QHBoxLayout()
        for w, stretch in ((self.key, 1), (self.show_key, 0), (self.generate, 0)):
            key_row.addWidget(w, stretch)
        form.addRow("API &key:", key_row)
        form.labelForField(key_row).setBuddy(self.key)  # type: ignore[attr-defined]

        self.port = QSpinBox()
        self.port.setAccessibleName("Port")
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText(view.ANY_PORT)  # 0: the system picks a free one
        self.port.setValue(self._saved_port())
        form.addRow("&Port:", self.port)
        lay.addLayout(form)

        switch_row = QHBoxLayout()
        self.switch = _button("&Serve", "Serve the model")
        self.switch.setCheckable(True)
        self.switch.clicked.connect(self.set_serving)
        self.status = _label("", "Server status", selectable=True)
        switch_row.addWidget(self.switch)
        switch_row.addWidget(self.status, 1)
        lay.addLayout(switch_row)

        self.address_box = QWidget()
        box = QGridLayout(self.address_box)
        box.setContentsMargins(0, 0, 0, 0)
        self.url_label = _label("", "Server address", selectable=True)
        self.copy_button = _button("C&opy", "Copy the server address")
        self.copy_button.clicked.connect(self.copy_address)
        self.example = _label("", "Example command", selectable=True)
        box.addWidget(QLabel("Address:"), 0, 0)
        box.addWidget(self.url_label, 0, 1)
        box.addWidget(self.copy_button, 0, 2)
        box.addWidget(QLabel("Try it:"), 1, 0)
        box.addWidget(self.example, 1, 1, 1, 2)
        box.setColumnStretch(1, 1)
        lay.addWidget(self.address_box)

        self.rates = _label("", "Requests and tokens per second")
        lay.addWidget(self.rates)
        self.table = QTableWidget(0, len(view.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(view.COLUMNS))
        self.table.setAccessibleName("Requests, newest first")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the request takes what is left, wrapping "POST /v1/chat/completions" in a narrow window
        header.setSectionResizeMode(view.COLUMNS.index("Request"), QHeaderView.ResizeMode.Stretch)
        lay.addWidget(self.table, 1)

    def _saved_port(self) -> int:
        try:
            return int(str(self.ctx.settings.value(PORT_KEY, DEFAULT_PORT)))
        except (TypeError, ValueError):  # an edited settings file
            return DEFAULT_PORT

    # --- choices ------------------------------------------------------------------------------

    def network(self) -> bool:
        """Whether other devices may connect (an address other than loopback)."""
        return bool(self.host.currentData() != view.HOSTS[0][0])

    def generate_key(self) -> None:
        self.key.setText(secrets.token_urlsafe(KEY_BYTES))

    def _show_key(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hi&de" if shown else "S&how")

    def copy_address(self) -> None:
        if self.running is not None:
            QGuiApplication.clipboard().setText(self.running.url)
            self.copy_button.setText("Copied")  # back to "Copy" at the next refresh

    def _on_chat_model(self, model: ChatModel | None) -> None:
        self.model = model
        self._show_model()
        if self.state in ("on", "starting"):
            if model is None:
                self._stop(view.MODEL_GONE)
            else:  # the new model, at the same address (the port the system picked, if it did)
                self._start(port=view.port_of(self.running.url) if self.running is not None else None)
        self._update()

    def _show_model(self) -> None:
        m = self.model
        self.model_label.setText(
            view.NO_MODEL if m is None else breakable(view.model_text(m.label, m.load.n_ctx))
        )
        self.open_chat_button.setVisible(m is None)

    # --- serving ------------------------------------------------------------------------------

    def set_serving(self, on: bool) -> None:
        """What the switch does: serve the chat's model, or stop serving."""
        if on and self.state == "off":
            self._start()
        elif not on and self.state in ("on", "starting"):
            self._stop(view.NOT_SERVING)
        self._update()

    def _start(self, *, port: int | None = None) -> None:
        model, host = self.model, str(self.host.currentData())
        port = self.port.value() if port is None else port
        key = (self.key.text().strip() or None) if self.network() else None  # greyed out: local
        if model is None:
            return
        try:
            check_address(host, key)  # refused here, in the window's words, before anything starts
        except ServerError as exc:
            self.ctx.error.emit(str(exc), view.KEY_HINT)
            self._set_state("off", f"Not serving: {exc}")
            return
        self.ctx.settings.setValue(PORT_KEY, self.port.value())
        job = self._job = self._job + 1
        self._set_state("starting", "Starting…")
        start_worker(lambda r, c: self.control.start(model, host=host, port=port, api_key=key),
                     owner=self, lane=self._lane, name="server start",
                     on_return=lambda running: self._started(job, running),
                     on_error=lambda m, h, cancelled: self._not_started(job, m, h, cancelled))  # fmt: skip

    def _started(self, job: int, running: RunningServer) -> None:
        self.running = running  # the control stops it before any later start: it is the one now
        if job != self._job:
            return
        self._shown_total = -1
        self.url_label.setText(running.url)
        self.example.setText(view.example_command(running.url, with_key=self.network()))
        self._set_state("on", view.serving_text(network=self.network()))
        self.refresh()

    def _not_started(self, job: int, message: str, hint: str, cancelled: bool) -> None:
        self.running = None  # a start stops the server before it first
        if job != self._job:
            return
        if not cancelled:
            self.ctx.error.emit(message, hint)
        self._set_state("off", f"Not serving: {message}")

    def _stop(self, note: str) -> None:
        job = self._job = self._job + 1
        self._set_state("stopping", "Stopping…")
        start_worker(lambda r, c: self.control.stop(), owner=self, lane=self._lane, name="server stop",
                     on_return=lambda _: self._stopped(job, note),
                     on_error=lambda m, h, cancelled: self._stopped(job, f"{note} {m}"))  # fmt: skip

    def _stopped(self, job: int, note: str) -> None:
        self.running = None
        if job == self._job:
            self._set_state("off", note)

    def _set_state(self, state: str, say: str) -> None:
        """Move to ``state`` and say so in the status line (screen readers hear it too)."""
        self.state = state
        self.status.setText(say)
        announce(self.status, say)
        if state == "on" and self.isVisible():
            self._timer.start()
        elif state != "on":
            self._timer.stop()
        self._update()

    def _update(self) -> None:
        s, serving = self.state, self.state in ("starting", "on")
        self.switch.setChecked(serving)
        self.switch.setText("&Stop serving" if serving else "&Serve")
        self.switch.setAccessibleName("Stop serving" if serving else "Serve the model")
        self.switch.setEnabled(s in ("on", "off") and (self.model is not None or s == "on"))
        self.switch.setToolTip("" if self.model is not None or serving else view.NO_MODEL)
        if s == "off" and self.status.text() in ("", view.NOT_SERVING, view.NO_MODEL_SHORT):
            self.status.setText(view.NO_MODEL_SHORT if self.model is None else view.NOT_SERVING)
        for choice in (self.host, self.port):
            choice.setEnabled(s == "off")
        for key_part in (self.key, self.show_key, self.generate):
            key_part.setEnabled(s == "off" and self.network())
        self.address_box.setVisible(s == "on")
        self.rates.setVisible(s == "on")

    # --- the live log -------------------------------------------------------------------------

    def refresh(self) -> None:
        """The rates, and the log when more requests came (the timer calls it every second)."""
        running = self.running
        if running is None:
            return
        self.copy_button.setText("C&opy")
        rates = running.stats.rates()
        self.rates.setText(view.rates_text(rates))
        if rates.total_requests == self._shown_total:
            return
        self._shown_total = rates.total_requests
        rows = view.log_rows(running.stats.recent(view.LOG_ROWS))
        self.table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(text)  # what an elided cell leaves out
                self.table.setItem(r, c, item)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self.state == "on":
            self.refresh()
            self._timer.start()

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()  # nobody looks: the log waits in the stats until shown again
        super().hideEvent(event)

    def shutdown(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> None:
        """The window is closing: stop serving (waits for the port to be free) and deliver nothing more."""
        self._timer.stop()
        discard_workers(self)  # a start not begun yet never begins
        start_worker(lambda r, c: self.control.close(), lane=self._lane, name="server close")
        self._lane.pool.waitForDone(timeout_ms)
        self.running, self.state = None, "off"

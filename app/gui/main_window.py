"""The main window: a list of panels on the left, the panel on the right, an error banner on top
and the model process's live numbers in the status bar. Panels are built the first time they are
shown, so the window opens before any heavy module is imported."""

from __future__ import annotations

import importlib
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.context import AppContext

# key, title, "module:Class" — built on first show
PANELS: tuple[tuple[str, str, str], ...] = (
    ("machine", "Machine", "app.gui.panels.machine:MachinePanel"),
    ("advisor", "Advisor", "app.gui.panels.advisor:AdvisorPanel"),
    ("quantviz", "What quantization does", "app.gui.panels.quantviz:QuantVizPanel"),
    ("library", "Library & downloads", "app.gui.panels.library:LibraryPanel"),
    ("convert", "Convert", "app.gui.panels.convert:ConvertPanel"),
    ("chat", "Chat", "app.gui.panels.chat:ChatPanel"),
)
# Requests one panel makes of another, which it never imports: (from, its signal, to, the method
# that takes the signal's arguments). The receiving panel is built if need be, then shown.
HANDOFFS: tuple[tuple[str, str, str, str], ...] = (
    ("library", "advise_requested", "advisor", "advise_path"),  # "Advise" on a library model
    ("advisor", "pull_requested", "library", "pull"),  # "Download and chat"
    ("advisor", "convert_requested", "convert", "set_source"),  # "Convert to …"
)


class ErrorBanner(QFrame):
    """A dismissible line at the top of the window: what went wrong and what to do next."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("errorBanner")
        self.setAccessibleName("Error message")
        self.setStyleSheet("#errorBanner { background: #b3261e; } #errorBanner QLabel { color: white; }")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("Dismiss")
        close.setAccessibleName("Dismiss the error message")
        close.clicked.connect(self.hide)
        lay.addWidget(self.text, 1)
        lay.addWidget(close)
        self.hide()

    def show_error(self, message: str, hint: str) -> None:
        self.text.setText(f"<b>{_esc(message)}</b>" + (f"<br>{_esc(hint)}" if hint else ""))
        self.show()


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("TailorLM")
        self.resize(1200, 800)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        self.banner = ErrorBanner()
        outer.addWidget(self.banner)
        body = QHBoxLayout()
        outer.addLayout(body, 1)
        self.nav = QListWidget()
        self.nav.setAccessibleName("Panels")
        self.nav.setFixedWidth(200)
        self.stack = QStackedWidget()
        self.panels: dict[str, QWidget] = {}
        for i, (key, title, _) in enumerate(PANELS):
            item = QListWidgetItem(title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(f"{title} (Ctrl+{i + 1})")
            self.nav.addItem(item)
            self.stack.addWidget(QWidget())  # placeholder until first shown
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.nav.currentRowChanged.connect(self._show_row)
        for i in range(len(PANELS)):
            act = QAction(self)
            act.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            act.triggered.connect(lambda _=False, row=i: self.nav.setCurrentRow(row))
            self.addAction(act)
        self._metrics = QLabel("")
        self._metrics.setAccessibleName("Model process metrics")
        self.statusBar().addPermanentWidget(self._metrics)
        self._build_menu()
        ctx.error.connect(self.banner.show_error)
        ctx.show_panel.connect(self.show_panel)
        ctx.open_chat.connect(self._open_chat)
        ctx.engine_metrics.connect(self._on_metrics)
        self._restore()

    # --- panels -------------------------------------------------------------------------------

    def panel(self, key: str) -> QWidget:
        """The panel ``key``, built now if it was not yet."""
        if key not in self.panels:
            row = next(i for i, (k, _, _) in enumerate(PANELS) if k == key)
            module, cls = PANELS[row][2].split(":")
            widget: QWidget = getattr(importlib.import_module(module), cls)(self.ctx)
            widget.setAccessibleName(PANELS[row][1])
            old = self.stack.widget(row)
            self.stack.insertWidget(row, widget)
            self.stack.removeWidget(old)
            old.deleteLater()
            self.panels[key] = widget
            for source, signal, target, method in HANDOFFS:
                if source == key:
                    getattr(widget, signal).connect(
                        lambda *args, t=target, m=method: self._hand_off(t, m, args)
                    )
        return self.panels[key]

    def _hand_off(self, key: str, method: str, args: tuple[Any, ...]) -> None:
        getattr(self.panel(key), method)(*args)
        self.show_panel(key)

    def _open_chat(self, path: str, load: dict[str, Any]) -> None:
        """A chat asked for before the Chat panel existed: build it and hand the request over."""
        fresh = "chat" not in self.panels
        panel = self.panel("chat")
        if fresh:
            panel.open_model(path, load)  # type: ignore[attr-defined]  # it was not listening yet
        self.show_panel("chat")

    def show_panel(self, key: str) -> None:
        row = next(i for i, (k, _, _) in enumerate(PANELS) if k == key)
        self.nav.setCurrentRow(row)

    def _show_row(self, row: int) -> None:
        if row < 0:
            return
        key = PANELS[row][0]
        try:
            self.panel(key)
        except Exception as exc:
            from app.gui.workers import describe_error

            self.ctx.error.emit(*describe_error(exc))
            return
        self.stack.setCurrentIndex(row)
        self.statusBar().showMessage(PANELS[row][1], 2000)

    # --- status bar ---------------------------------------------------------------------------

    def _on_metrics(self, m: dict[str, Any]) -> None:
        from app.gui.panels.chat_metrics import status_text

        self._metrics.setText(status_text(m))

    # --- menu, settings -----------------------------------------------------------------------

    def _build_menu(self) -> None:
        help_menu = self.menuBar().addMenu("&Help")
        logs = help_menu.addAction("Open log folder")
        logs.triggered.connect(self._open_logs)

    def _open_logs(self) -> None:
        from PySide6.QtCore import QUrl

        from app.core.paths import log_dir

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_dir())))

    def _restore(self) -> None:
        geometry = self.ctx.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        last = str(self.ctx.settings.value("window/panel", "advisor"))
        keys = [k for k, _, _ in PANELS]
        self.nav.setCurrentRow(keys.index(last) if last in keys else 1)

    def closeEvent(self, event: Any) -> None:
        self.ctx.settings.setValue("window/geometry", self.saveGeometry())
        row = self.nav.currentRow()
        if row >= 0:
            self.ctx.settings.setValue("window/panel", PANELS[row][0])
        for widget in self.panels.values():
            shutdown = getattr(widget, "shutdown", None)
            if callable(shutdown):
                shutdown()
        from app.gui.workers import discard_workers

        discard_workers(self)  # what panels without a shutdown of their own started
        super().closeEvent(event)

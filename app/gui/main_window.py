"""The main window: a list of panels on the left, the panel on the right, an error banner on top
and the model process's live numbers in the status bar. Panels are built the first time they are
shown, so the window opens before any heavy module is imported."""

from __future__ import annotations

import importlib
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.context import AppContext
from app.gui.widgets.page_stack import PageStack
from app.gui.widgets.screen_fit import fit_to_screen

# key, title, "module:Class" — built on first show
PANELS: tuple[tuple[str, str, str], ...] = (
    ("machine", "Machine", "app.gui.panels.machine:MachinePanel"),
    ("advisor", "Advisor", "app.gui.panels.advisor:AdvisorPanel"),
    ("quantviz", "What quantization does", "app.gui.panels.quantviz:QuantVizPanel"),
    ("ladder", "Quality ladder", "app.gui.panels.ladder:LadderPanel"),
    ("library", "Library & downloads", "app.gui.panels.library:LibraryPanel"),
    ("convert", "Convert", "app.gui.panels.convert:ConvertPanel"),
    ("chat", "Chat", "app.gui.panels.chat:ChatPanel"),
    ("server", "Server", "app.gui.panels.server:ServerPanel"),  # serves the chat's model
)
# The first window's size when nothing was saved; never more than the screen offers.
DEFAULT_SIZE = (1200, 800)
NAV_PADDING_PX = 28  # the panel list: its longest title plus the item's margins and the frame
NAV_ICON_PX = 20  # the panel list's icons (resources/icons/<key>.svg), and the gap after them
NAV_ICON_GAP_PX = 6
NAV_ITEM_SPACING_PX = 2  # around each item: room to breathe between icons
THEME_TITLES = (("system", "Follow the &system"), ("light", "&Light"), ("dark", "&Dark"))
# Requests one panel makes of another, which it never imports: (from, its signal, to, the method
# that takes the signal's arguments). The receiving panel is built if need be, then shown.
HANDOFFS: tuple[tuple[str, str, str, str], ...] = (
    ("library", "advise_requested", "advisor", "advise_path"),  # "Advise" on a library model
    ("advisor", "pull_requested", "library", "pull"),  # "Download and chat"
    ("advisor", "convert_requested", "convert", "set_source"),  # "Convert to …"
    ("convert", "advise_requested", "advisor", "advise_path"),  # "Open in Advisor" on a result
    ("chat", "advise_requested", "advisor", "advise_path"),  # "Choose a smaller plan" after a crash
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
        self.resize(*DEFAULT_SIZE)
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
        self.nav.setIconSize(QSize(NAV_ICON_PX, NAV_ICON_PX))
        self.nav.setSpacing(NAV_ITEM_SPACING_PX)
        # as wide as the longest title and its icon, no wider: the panels need the room on a laptop
        self.nav.setFixedWidth(
            max(self.nav.fontMetrics().horizontalAdvance(t) for _, t, _ in PANELS)
            + NAV_ICON_PX
            + NAV_ICON_GAP_PX
            + 2 * NAV_ITEM_SPACING_PX
            + NAV_PADDING_PX
        )
        self.stack = PageStack()  # only the panel on screen sets the window's minimum size
        self.panels: dict[str, QWidget] = {}
        for i, (key, title, _) in enumerate(PANELS):
            item = QListWidgetItem(title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setToolTip(f"{title} (Ctrl+{i + 1})")
            self.nav.addItem(item)
            self.stack.addWidget(QWidget())  # placeholder until first shown
        self._paint_icons()
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.nav.currentRowChanged.connect(self._show_row)
        # a screen reader selecting an item (AT-SPI Selection, the item's Toggle action) changes the
        # selection, not the current row: the panel follows the selection too
        self.nav.itemSelectionChanged.connect(self._follow_selection)
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

    def _follow_selection(self) -> None:
        selected = self.nav.selectedItems()
        if selected and selected[0] is not self.nav.currentItem():
            self.nav.setCurrentItem(selected[0])

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
        from app.gui.theme import apply_theme

        file_menu = self.menuBar().addMenu("&File")
        self.quit_action = file_menu.addAction("&Quit")
        # the platform's Quit keys (Ctrl+Q on Linux and macOS); Windows names none, so Ctrl+Q there
        keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Quit) or [QKeySequence("Ctrl+Q")]
        self.quit_action.setShortcuts(keys)
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        self.quit_action.triggered.connect(self.close)  # closeEvent saves and stops; the app then ends
        view = self.menuBar().addMenu("&View")
        view.addSection("Colours")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)  # exclusive: one is checked
        for choice, title in THEME_TITLES:
            act = view.addAction(title)
            act.setCheckable(True)
            act.triggered.connect(lambda _=False, c=choice: self.ctx.set_theme(c))
            group.addAction(act)
            self.theme_actions[choice] = act
        self.theme_actions[self.ctx.theme].setChecked(True)
        apply_theme(self.ctx.theme)
        help_menu = self.menuBar().addMenu("&Help")
        logs = help_menu.addAction("Open log folder")
        logs.triggered.connect(self._open_logs)
        help_menu.addSeparator()
        self.about_action = help_menu.addAction("&About TailorLM")
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        self.about_action.triggered.connect(self.show_about)

    def show_about(self) -> QWidget:
        from app.gui.about import show_about

        return show_about(self)

    def _paint_icons(self) -> None:
        """The panel list's icons, in the palette's colours (again whenever the palette changes)."""
        from app.gui.icons import tinted_icon

        for row, (key, _, _) in enumerate(PANELS):
            self.nav.item(row).setIcon(tinted_icon(key, self))  # the window's palette is the new one

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:  # light ↔ dark: redraw the icons to match
            self._paint_icons()
        super().changeEvent(event)

    def _open_logs(self) -> None:
        from PySide6.QtCore import QUrl

        from app.core.paths import log_dir

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_dir())))

    def _restore(self) -> None:
        geometry = self.ctx.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        fit_to_screen(self)  # saved on a larger monitor, or the default on a small one: fit this one
        self._fitted = False  # and again with the frame, when shown
        last = str(self.ctx.settings.value("window/panel", "advisor"))
        keys = [k for k, _, _ in PANELS]
        self.nav.setCurrentRow(keys.index(last) if last in keys else 1)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._fitted:  # the window frame is known once shown: fit it, frame and all
            self._fitted = True
            fit_to_screen(self)

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

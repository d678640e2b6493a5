"""Library & downloads: the models on disk (the library: pulled, HF cache, LM Studio, Ollama, the
user's folders), the Hugging Face Hub (:mod:`library_hub`) and the download queue
(:mod:`library_downloads`).

Every library call reads a JSON file under a lock and a scan walks folders and reads headers, so
each runs off the GUI thread and hands back the rows ready to show — including whether each file
is still there, which the table must not ``stat`` on the GUI thread while it paints. They run one
after another on the panel's lane, so the table always ends on the last change's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.panels.library_downloads import DownloadQueue
from app.gui.panels.library_hub import HubBrowser
from app.gui.widgets.flow_layout import FlowLayout
from app.gui.workers import Lane, Worker, discard_workers, start_worker

ORIGINS = {
    "hf_cache": "HF cache",
    "lmstudio": "LM Studio",
    "ollama": "Ollama",
    "folder": "folder",
    "file": "file",
}
_Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def origin_label(m: Any) -> str:
    if m.origin == "tailorlm":
        return "pulled" if m.repo else "made here"
    return ORIGINS.get(m.origin, m.origin)


def count(n: int) -> str:
    return f"{n} model" if n == 1 else f"{n} models"


class LibraryTable(QAbstractTableModel):
    """Rows of (LibraryModel, present); the raw value of each cell is its sort key."""

    COLUMNS = ("Name", "Id", "Quant", "Size", "Origin", "Path", "Present")

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[Any, bool]] = []

    def set_rows(self, rows: list[tuple[Any, bool]]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = 0) -> Any:
        m, present = self.rows[index.row()]
        value = (m.name or m.id, m.id, m.quant or "?", m.size_bytes, origin_label(m), str(m.path), present)[
            index.column()
        ]
        if role == Qt.ItemDataRole.UserRole:
            return value
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 3:
                return format_bytes(value)
            return ("yes" if value else "missing") if index.column() == 6 else value
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{m.path}\n{m.repo or ''}".strip()
        return None


def _found(report: Any) -> str:
    """ "3 models. Skipped 2 files: empty.gguf is empty; …" — a bad file is named, never allowed
    to hide the others."""
    return _with_skipped(count(len(report.models)) + ".", report.problems)


def _with_skipped(text: str, problems: Any) -> str:
    from app.core.library.scan import skipped_summary

    return f"{text} {skipped_summary(problems)}".strip()


class LibraryPanel(QWidget):
    """The models on disk, the Hub, and the download queue."""

    # the path of a model to size up in the Advisor ("Advise"); the window hands it over
    advise_requested = Signal(str)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        from app.core.advice.recommend import DEFAULT_CTX

        self.ctx = ctx
        self.lane = Lane("library", parent=self)  # library calls, in the order the user made them
        self.tasks: set[Worker] = set()  # library calls not yet answered
        self._announcing = False  # we emit library_changed ourselves: our table is already fresh
        split = QSplitter(Qt.Orientation.Vertical)
        QVBoxLayout(self).addWidget(split)
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Library and Hub")
        self.tabs.addTab(self._build_library(), "&On this computer")
        self.hub = HubBrowser(ctx, n_ctx=DEFAULT_CTX)
        self.tabs.addTab(self.hub, "Hugging Face H&ub")  # Alt+H is the Help menu
        self.downloads = DownloadQueue(ctx)
        self.hub.download_requested.connect(self.downloads.enqueue)
        self.pending = PendingPull(self)
        self.downloads.verified.connect(lambda _: self.ctx.library_changed.emit())  # reload() listens
        split.addWidget(self.tabs)
        split.addWidget(self.downloads)
        split.setSizes([500, 200])
        ctx.library_changed.connect(self.reload)
        self.rescan()

    def _build_library(self) -> QWidget:
        page = QWidget()
        lay = QVBoxLayout(page)
        self.table_model = LibraryTable()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setAccessibleName("Models on this computer")
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        lay.addWidget(self.table, 1)
        row = FlowLayout()  # wraps onto a second line on a narrow window
        buttons = []
        for text, name, slot in (
            ("&Add folder…", "Add a folder of models", self._choose_folder),
            ("Re&scan", "Look for models again", self.rescan),
            ("&Remove", "Remove the model from the library", self.remove_selected),
            ("&Delete files…", "Delete the model's files", self._confirm_delete),
            ("&Chat with it", "Chat with the model", self.chat_selected),
            ("Ad&vise", "Advise settings for the model", self.advise_selected),
        ):
            button = QPushButton(text)
            button.setAccessibleName(name)
            button.clicked.connect(slot)
            row.addWidget(button)
            buttons.append(button)
        _, _, self.remove_button, self.delete_button, self.chat_button, self.advise_button = buttons
        lay.addLayout(row)
        self.status = QLabel("Looking for models…")
        self.status.setAccessibleName("Library status")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)  # a skipped file's name and reason can be long
        lay.addWidget(self.status)
        self._update_buttons()
        return page

    # --- library calls, off the GUI thread --------------------------------------------------------

    def _run(self, change: Callable[[Any], str | None], *, changed: bool = False) -> None:
        """``change(library)`` on the pool; then show the models, its message, and tell the others."""
        lib = self.ctx.library

        def work(report: Any, cancel: Any) -> Any:
            note = change(lib)
            return note, [(m, m.present) for m in lib.models()]

        def done(result: Any) -> None:
            note, rows = result
            self.table_model.set_rows(rows)
            self.status.setText(note or f"{count(len(rows))} in the library.")
            self._update_buttons()
            if changed:
                self._announcing = True
                try:
                    self.ctx.library_changed.emit()
                finally:
                    self._announcing = False

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.status.setText(f"{message} {hint}".strip())
            if not cancelled:
                self.ctx.error.emit(message, hint)

        task = start_worker(work, owner=self, lane=self.lane, on_return=done, on_error=failed,
                            on_finish=lambda: self.tasks.discard(task))  # fmt: skip
        self.tasks.add(task)

    def rescan(self) -> None:
        self.status.setText("Looking for models…")
        self._run(lambda lib: _found(lib.scan_report()))

    def reload(self) -> None:
        """The library changed elsewhere (a pull, a conversion): read it again, no disk walk."""
        if not self._announcing:
            self._run(lambda lib: None)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of GGUF models")
        if folder:
            self.add_folder(Path(folder))

    def add_folder(self, folder: Path) -> None:
        self.status.setText(f"Looking for models in {folder}…")

        def add(lib: Any) -> str:
            own = type(lib)(lib.registry_path, roots=lib.roots)  # its last_problems are this scan's
            found = own.add_folder(folder)
            return _with_skipped(f"{count(len(found))} found in {folder}.", own.last_problems)

        self._run(add, changed=True)

    def remove_selected(self) -> None:
        if (m := self.selected()) is not None:
            self._run(lambda lib: f"Removed {lib.remove(m.id).id}; its files stay.", changed=True)

    def _confirm_delete(self) -> None:
        m = self.selected()
        if m is None or not m.owned:
            return
        question = f"Delete {m.id} ({format_bytes(m.size_bytes)}) from the disk?\n{m.path}"
        if QMessageBox.question(self, "Delete the files?", question) == QMessageBox.StandardButton.Yes:
            self.delete_files(m.id)

    def delete_files(self, model_id: str) -> None:
        """What "Delete files…" does once confirmed; the library refuses files it did not create."""
        self._run(lambda lib: f"Deleted {lib.remove(model_id, delete_files=True).id}.", changed=True)

    # --- the selection ----------------------------------------------------------------------------

    def selected(self) -> Any:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.rows[self.proxy.mapToSource(rows[0]).row()][0] if rows else None

    def select_id(self, model_id: str) -> None:
        for i, (m, _) in enumerate(self.table_model.rows):
            if m.id == model_id:
                self.table.selectRow(self.proxy.mapFromSource(self.table_model.index(i, 0)).row())

    def _update_buttons(self) -> None:
        m = self.selected()
        for b in (self.remove_button, self.chat_button, self.advise_button):
            b.setEnabled(m is not None)
        self.delete_button.setEnabled(m is not None and m.owned)
        self.delete_button.setToolTip("" if m is None or m.owned else "TailorLM did not create these files.")

    def chat_selected(self) -> None:
        if (m := self.selected()) is not None:
            self.ctx.open_chat.emit(str(m.path), {})
            self.ctx.show_panel.emit("chat")

    def advise_selected(self) -> None:
        if (m := self.selected()) is not None:
            self.advise_requested.emit(str(m.path))

    def pull(self, want: dict[str, Any]) -> None:
        """The Advisor's "Download and chat" (through the window): find the file, queue it, and
        once verified open the chat with the advisor's plan."""
        self.pending.start(want)

    def shutdown(self) -> None:
        """The window closes: stop every pull (their partial files stay) and every library call."""
        self.downloads.shutdown()
        discard_workers(self)


class PendingPull:
    """Pulls the Advisor asked for, waiting to be verified to open the chat with its plan."""

    def __init__(self, panel: LibraryPanel) -> None:
        self.panel = panel
        self.waiting: dict[int, dict[str, Any]] = {}  # id(row) → the plan to open the chat with
        panel.downloads.verified.connect(self._verified)

    def start(self, want: dict[str, Any]) -> None:
        """``want``: {"repo_id", "filename" (a Hub file) or "quant" (pick by type), "n_ctx",
        "n_gpu_layers"} — the AdvisorPanel's ``pull_requested``."""

        def queued(row: Any) -> None:  # offline too: the row waits for the network, with Retry
            load = {k: want[k] for k in ("n_ctx", "n_gpu_layers") if want.get(k) is not None}
            self.waiting[id(row)] = load
            self.panel.tabs.setCurrentWidget(self.panel.hub)

        self.panel.downloads.request(str(want["repo_id"]), quant=want.get("quant"),
                                     filename=want.get("filename"), on_row=queued)  # fmt: skip

    def _verified(self, entry: Any) -> None:
        for row in self.panel.downloads.rows:
            load = self.waiting.pop(id(row), None) if row.entry is entry else None
            if load is not None and entry is not None:
                self.panel.ctx.open_chat.emit(str(entry.path), load)
                return

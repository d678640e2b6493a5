"""Where the Advisor's model comes from: the built-in catalog, the library, a Hub search, or a file or
folder on disk. Each tab ends in a :class:`ModelRequest`; the panel loads it off the GUI thread.

Hub searches and file listings run on the thread pool too; a newer search or listing replaces the
older one, whose answer is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.widgets.empty_list import EmptyStateList
from app.gui.widgets.library_combo import compact_combo
from app.gui.workers import start_worker

if TYPE_CHECKING:
    from app.core.model.info import ModelInfo
    from app.gui.context import AppContext


@dataclass(frozen=True)
class ModelRequest:
    """A model the user picked, not loaded yet. ``load`` runs on the thread pool."""

    label: str
    kind: str  # "catalog" | "library" | "hub_gguf" | "hub_repo" | "file"
    load: Callable[[], ModelInfo]
    repo_id: str | None = None  # hub_gguf: where to pull from
    filename: str | None = None  # hub_gguf: the first part's path in the repo


def request_for_spec(spec: str, kind: str = "file") -> ModelRequest:
    """A request for anything :func:`app.core.model.source.load_model` reads."""

    def load() -> ModelInfo:
        from app.core.model.source import load_model

        return load_model(spec)

    return ModelRequest(spec, kind, load)


def request_for_hub_file(repo_id: str, rf: Any) -> ModelRequest:
    """A GGUF file (all parts of a split one) of a Hub repo, sized from its remote header."""

    def load() -> ModelInfo:
        from app.core.model.remote import remote_model

        return remote_model(repo_id, rf.file)

    return ModelRequest(f"{repo_id}/{rf.file.first}", "hub_gguf", load, repo_id, rf.file.first)


def _label_for(combo: QComboBox) -> QLabel:
    """ "Model:" before a combo box: Qt on Linux gives a combo box its value as its name, so
    screen readers take what it chooses from its label (AT-SPI's labelled-by, a buddy)."""
    label = QLabel("Model:")
    label.setBuddy(combo)
    return label


def _button(text: str, name: str) -> QPushButton:
    b = QPushButton(text)
    b.setAccessibleName(name)
    return b


class ModelPicker(QTabWidget):
    """Four ways to name a model; ``requested`` carries the choice."""

    requested = Signal(object)  # ModelRequest

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setAccessibleName("Choose a model")
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.addTab(self._catalog_tab(), "&Catalog")
        self.addTab(self._library_tab(), "&Library")
        self.addTab(self._hub_tab(), "&Hugging Face Hub")
        self.addTab(self._file_tab(), "&File or folder")
        self.currentChanged.connect(self._fit_current)
        self._fit_current(0)
        ctx.library_changed.connect(self.refresh_library)
        self.refresh_library()

    def _fit_current(self, index: int) -> None:
        # A tab widget is as tall as its tallest page (the Hub's lists): cap it at the page on
        # show, so the plans below get the room.
        page = self.widget(index)
        if page is not None:
            frame = 2 * self.style().pixelMetric(self.style().PixelMetric.PM_DefaultFrameWidth) + 4
            self.setMaximumHeight(self.tabBar().sizeHint().height() + page.sizeHint().height() + frame)

    def show_request(self, request: ModelRequest) -> None:
        """Point the picker at the model on screen, wherever it was chosen (the overview, the
        Library's "Advise"), so it never names another model than the plans below."""
        if request.kind == "catalog":
            self._select(self.catalog_combo, request.label)
            self.setCurrentIndex(0)
        elif request.kind == "library":
            if self._select(self.library_combo, request.label):
                self.setCurrentIndex(1)
            else:  # not (yet) listed: show it as a path
                self.path_edit.setText(request.label)
                self.setCurrentIndex(3)
        elif request.kind == "file":
            self.path_edit.setText(request.label)
            self.setCurrentIndex(3)
        elif request.kind in ("hub_repo", "hub_gguf"):
            self.setCurrentIndex(2)

    @staticmethod
    def _select(combo: QComboBox, data: str) -> bool:
        i = combo.findData(data)
        if i >= 0:
            combo.setCurrentIndex(i)
        return i >= 0

    # --- catalog ------------------------------------------------------------------------------

    def _catalog_tab(self) -> QWidget:
        from app.core.model.catalog import load_catalog

        w = QWidget()
        lay = QHBoxLayout(w)
        self.catalog_combo = QComboBox()
        self.catalog_combo.setAccessibleName("Catalog model")
        compact_combo(self.catalog_combo)
        for e in load_catalog():
            self.catalog_combo.addItem(f"{e.name} ({e.params_b:g} B)", e.id)
        go = _button("Size it up", "Size up the catalog model")
        go.clicked.connect(self._pick_catalog)
        self.catalog_combo.activated.connect(lambda _i: self._pick_catalog())
        lay.addWidget(_label_for(self.catalog_combo))
        lay.addWidget(self.catalog_combo, 1)
        lay.addWidget(go)
        return w

    def _pick_catalog(self) -> None:
        cid = self.catalog_combo.currentData()
        if cid:
            self.requested.emit(request_for_spec(str(cid), "catalog"))

    # --- library ------------------------------------------------------------------------------

    def _library_tab(self) -> QWidget:
        w = QWidget()
        lay = QHBoxLayout(w)
        self.library_combo = QComboBox()
        self.library_combo.setAccessibleName("Library model")
        compact_combo(self.library_combo)
        self.library_combo.setPlaceholderText("Looking for models on this computer…")
        go = _button("Size it up", "Size up the library model")
        go.clicked.connect(self._pick_library)
        self.library_combo.activated.connect(lambda _i: self._pick_library())
        lay.addWidget(_label_for(self.library_combo))
        lay.addWidget(self.library_combo, 1)
        lay.addWidget(go)
        return w

    def refresh_library(self) -> None:
        from app.gui.widgets.library_combo import refresh_library_combo

        refresh_library_combo(self, self.ctx.library, self.library_combo,
                              empty_text="No models yet: download or add one",
                              on_failed=lambda m, h: self.status.setText(m))  # fmt: skip

    def _pick_library(self) -> None:
        path = self.library_combo.currentData()
        if path:
            self.requested.emit(request_for_spec(str(path), "library"))

    # --- the Hub ------------------------------------------------------------------------------

    def _hub_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.hub_query = QLineEdit()
        self.hub_query.setAccessibleName("Hub search or repo id")
        self.hub_query.setPlaceholderText(
            "Search GGUF models, or type a repo id like Qwen/Qwen2.5-7B-Instruct"
        )
        self.hub_query.returnPressed.connect(self.search_hub)
        search = _button("Search", "Search the Hub")
        search.clicked.connect(self.search_hub)
        repo = _button("Use this repo id", "Size up the repo id as typed")
        repo.clicked.connect(self._pick_repo_id)
        row.addWidget(self.hub_query, 1)
        row.addWidget(search)
        row.addWidget(repo)
        lay.addLayout(row)
        lists = QHBoxLayout()
        self.hub_repos = EmptyStateList("Search above to list GGUF repos, most downloaded first.")
        self.hub_repos.setAccessibleName("Hub repos found")
        self.hub_repos.currentItemChanged.connect(self._list_files)
        self.hub_files = EmptyStateList("Choose a repo to list its GGUF files.")
        self.hub_files.setAccessibleName("GGUF files of the repo; Enter sizes one up")
        self.hub_files.itemActivated.connect(self._pick_hub_file)
        for lst, title in ((self.hub_repos, "&Repos"), (self.hub_files, "GGUF fi&les")):
            lst.setMaximumHeight(140)  # the plans below matter more than long result lists
            column = QVBoxLayout()
            label = QLabel(title)
            label.setBuddy(lst)
            column.addWidget(label)
            column.addWidget(lst)
            lists.addLayout(column, 1)
        lay.addLayout(lists)
        self.status = QLabel("")
        self.status.setAccessibleName("Model source status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        return w

    def search_hub(self) -> None:
        from app.core.hub.repo import search_models

        query = self.hub_query.text().strip()
        self.status.setText("Searching the Hub…")

        def done(found: list[Any]) -> None:
            self.hub_repos.clear()
            self.hub_files.clear()
            for m in found:
                item = QListWidgetItem(
                    f"{m.repo_id}  ({m.downloads:,} downloads{', gated' if m.gated else ''})"
                )
                item.setData(Qt.ItemDataRole.UserRole, m.repo_id)
                self.hub_repos.addItem(item)
            self.status.setText(f"{len(found)} repos." if found else "No GGUF repos match.")

        start_worker(lambda r, c: search_models(query), owner=self, latest="hub", on_return=done,
                     on_error=self._hub_failed)  # fmt: skip

    def _hub_failed(self, msg: str, hint: str, cancelled: bool) -> None:
        self.status.setText(f"{msg} {hint}".strip())

    def _list_files(self, item: QListWidgetItem | None, _prev: Any = None) -> None:
        if item is None:
            return
        from app.core.hub.repo import list_gguf_files

        repo_id = str(item.data(Qt.ItemDataRole.UserRole))
        self.hub_files.clear()
        self.status.setText(f"Listing {repo_id}…")

        def done(files: list[Any]) -> None:
            from app.core.units import format_bytes

            for rf in files:
                size = format_bytes(rf.file.size_bytes) if rf.file.size_bytes else "?"
                parts = f", {len(rf.file.paths)} parts" if len(rf.file.paths) > 1 else ""
                entry = QListWidgetItem(f"{rf.file.first}  ({rf.file.quant or '?'}, {size}{parts})")
                entry.setData(Qt.ItemDataRole.UserRole, (repo_id, rf))
                self.hub_files.addItem(entry)
            if files:
                self.status.setText("Choose a file (Enter or double-click) to size it up.")
            else:  # a checkpoint repo: size it from config.json and its safetensors headers
                self.status.setText(f"{repo_id} has no GGUF files; sizing up its checkpoint.")
                self.requested.emit(request_for_spec(repo_id, "hub_repo"))

        start_worker(lambda r, c: list_gguf_files(repo_id), owner=self, latest="hub", on_return=done,
                     on_error=self._hub_failed)  # fmt: skip

    def _pick_hub_file(self, item: QListWidgetItem) -> None:
        repo_id, rf = item.data(Qt.ItemDataRole.UserRole)
        self.requested.emit(request_for_hub_file(repo_id, rf))

    def _pick_repo_id(self) -> None:
        text = self.hub_query.text().strip()
        if text:
            self.requested.emit(request_for_spec(text, "hub_repo"))

    # --- a file or folder ---------------------------------------------------------------------

    def _file_tab(self) -> QWidget:
        w = QWidget()
        lay = QHBoxLayout(w)
        self.path_edit = QLineEdit()
        self.path_edit.setAccessibleName("Path of a GGUF file or checkpoint folder")
        self.path_edit.setPlaceholderText("/path/to/model.gguf or a Hugging Face checkpoint folder")
        self.path_edit.returnPressed.connect(self._pick_path)
        browse_file = _button("GGUF file…", "Choose a GGUF file")
        browse_file.clicked.connect(self._browse_file)
        browse_dir = _button("Checkpoint folder…", "Choose a checkpoint folder")
        browse_dir.clicked.connect(self._browse_folder)
        go = _button("Size it up", "Size up the file or folder")
        go.clicked.connect(self._pick_path)
        for widget in (self.path_edit, browse_file, browse_dir, go):
            lay.addWidget(widget, 1 if widget is self.path_edit else 0)
        return w

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.path_edit.setText(path)
            self._pick_path()

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a Hugging Face checkpoint folder")
        if path:
            self.path_edit.setText(path)
            self._pick_path()

    def _pick_path(self) -> None:
        text = self.path_edit.text().strip()
        if text:
            self.requested.emit(request_for_spec(text, "file"))

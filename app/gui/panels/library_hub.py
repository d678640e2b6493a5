"""The Hub half of the Library panel: search GGUF repos, list a repo's files, size each file up for
this machine (the advisor's plan from its remote header, ★ on the pick) and ask for a download.

Every call goes over the network, so each runs on the thread pool; the files are listed first
(one request) and the fit filled in after (a header read per file). A newer search, or a newer
repo's listing and sizing, replaces the older one, whose answer is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.advice.speed_words import format_tok_s
from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.workers import start_worker

FITS = {"gpu": "on the GPU", "partial": "GPU + CPU", "cpu": "on the CPU", "no": "does not fit"}
SEARCH_LIMIT = 50


def _table(columns: tuple[str, ...], name: str) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(columns)
    t.setAccessibleName(name)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().hide()
    t.setWordWrap(False)
    header = t.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the repo or file name
    return t


def _fill(table: QTableWidget, rows: list[tuple[str, ...]], first_column: int = 0) -> None:
    if first_column == 0:
        table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, text in enumerate(values, start=first_column):
            table.setItem(r, c, QTableWidgetItem(text))


class HubBrowser(QWidget):
    """Search → repo → file → ``download_requested``."""

    download_requested = Signal(str, object)  # repo id, app.core.hub.repo.RepoGGUF

    def __init__(self, ctx: AppContext, *, n_ctx: int) -> None:
        super().__init__()
        self.ctx, self.n_ctx = ctx, n_ctx
        self.repo = ""
        self.files: list[Any] = []  # RepoGGUF per row of the file table
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search GGUF models on the Hugging Face Hub, e.g. qwen 1.5b")
        self.query.setAccessibleName("Search the Hub")
        self.query.returnPressed.connect(self.search)
        search = QPushButton("S&earch")
        search.setAccessibleName("Search the Hub")
        search.clicked.connect(self.search)
        row.addWidget(self.query, 1)
        row.addWidget(search)
        lay.addLayout(row)
        split = QSplitter()
        self.repo_table = _table(("Repo", "Downloads", "Likes", "Access"), "Repos found")
        self.repo_table.itemSelectionChanged.connect(self._repo_chosen)
        columns = ("File", "Quant", "Size", "Fits", "RAM", "VRAM", "tok/s")
        self.file_table = _table(columns, "GGUF files of the repo, sized up for this machine")
        self.file_table.itemSelectionChanged.connect(
            lambda: self.download_button.setEnabled(self.chosen_file() is not None)
        )
        split.addWidget(self.repo_table)
        split.addWidget(self.file_table)
        split.setSizes([300, 600])
        lay.addWidget(split, 1)
        row = QHBoxLayout()
        self.status = QLabel("Search for a model, pick a repo, then a file.")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Hub status")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.download_button = QPushButton("Do&wnload")
        self.download_button.setAccessibleName("Download the chosen file")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self._download)
        row.addWidget(self.status, 1)
        row.addWidget(self.download_button)
        lay.addLayout(row)

    def _failed(self, what: str) -> Callable[[str, str, bool], None]:
        """Say it once, in the status line under the tables — it answers what was just asked here —
        not in the window's banner as well. Offline is not a failure of the search: no prefix."""
        from app.core.hub.online import OFFLINE_SENTENCE

        def show(message: str, hint: str, cancelled: bool) -> None:
            text = f"{message} {hint}" if message == OFFLINE_SENTENCE else f"{what}: {message} {hint}"
            self.status.setText(text.strip())

        return show

    def search(self) -> None:
        from app.core.hub.repo import search_models

        query = self.query.text().strip()
        self.status.setText(f"Searching the Hub for {query!r}…")

        def done(found: list[Any]) -> None:
            self.status.setText(f"{len(found)} GGUF repos." if found else f"No GGUF repos match {query!r}.")
            rows = [
                (m.repo_id, f"{m.downloads:,}", str(m.likes), "gated" if m.gated else "open") for m in found
            ]
            _fill(self.repo_table, rows)

        def work(report: Any, cancel: Any) -> list[Any]:
            return search_models(query, limit=SEARCH_LIMIT)

        start_worker(
            work, owner=self, latest="search", on_return=done, on_error=self._failed("Search failed")
        )

    def _repo_chosen(self) -> None:
        items = self.repo_table.selectedItems()
        if items:
            self.open_repo(self.repo_table.item(items[0].row(), 0).text())

    def open_repo(self, repo: str) -> None:
        """List the repo's GGUF files at once, then fill in how each fits."""
        from app.core.hub.repo import list_gguf_files

        self.repo, self.files = repo, []
        self.file_table.setRowCount(0)
        self.status.setText(f"Listing the files of {repo}…")

        def listed(files: list[Any]) -> None:
            self.files = files
            rows = []
            for f in files:
                parts = f" (+{len(f.file.paths) - 1} parts)" if len(f.file.paths) > 1 else ""
                size = format_bytes(f.file.size_bytes) if f.file.size_bytes else "?"
                rows.append((f.file.first + parts, f.file.quant or "?", size, "…", "…", "…", "…"))
            _fill(self.file_table, rows)
            if not files:
                self.status.setText(f"{repo} has no GGUF files.")
                return
            self.status.setText(f"{len(files)} GGUF files in {repo}; working out how each fits…")
            self._plan(repo, files)

        def work(report: Any, cancel: Any) -> list[Any]:
            return list_gguf_files(repo)

        # one key for the listing and the sizing up that follows: a newer repo replaces either
        start_worker(work, owner=self, latest="repo", on_return=listed,
                     on_error=self._failed(f"Listing {repo} failed"))  # fmt: skip

    def _plan(self, repo: str, files: list[Any]) -> None:
        from app.core.advice.hub_fit import plan_files, recommended_file

        profile, n_ctx = self.ctx.profile, self.n_ctx

        def work(report: Any, cancel: Any) -> Any:
            from app.core.advice.recommend import budget_from_profile
            from app.core.machine.hardware import detect_machine

            budget = budget_from_profile(profile or detect_machine(measure_bandwidth=False))
            planned = plan_files(repo, files, budget, n_ctx)
            return planned, recommended_file(planned)

        def done(result: Any) -> None:
            planned, best = result
            rows = []
            for fp in planned:
                p = fp.plan
                fits = ("★ " if fp is best else "") + FITS.get(p.fits, p.fits)
                vram = format_bytes(p.vram_bytes) if p.vram_bytes else "—"
                rows.append((fits, format_bytes(p.ram_bytes), vram, format_tok_s(p.speed.tok_s)))
            _fill(self.file_table, rows, first_column=3)
            pick = f" ★ {best.repo_file.file.first} fits best at {n_ctx:,} tokens." if best else ""
            self.status.setText(f"{len(planned)} GGUF files in {repo}.{pick}")

        start_worker(work, owner=self, latest="repo", on_return=done,
                     on_error=self._failed(f"Sizing up the files of {repo} failed"))  # fmt: skip

    def chosen_file(self) -> Any:
        items = self.file_table.selectedItems()
        return self.files[items[0].row()] if items and items[0].row() < len(self.files) else None

    def _download(self) -> None:
        if (rf := self.chosen_file()) is not None:
            self.download_requested.emit(self.repo, rf)

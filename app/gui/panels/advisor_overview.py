"""The Advisor's first page: what this machine can run from the built-in catalog, best first (the
GUI's ``tailorlm catalog``), so a new user sees options before choosing anything — and ends in one
clear step: "Download <the best one> and chat", or the row they select instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels.advisor_table import COLUMN_TIPS, FITS, fit_words, set_header_tips
from app.gui.workers import start_worker

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget
    from app.gui.panels.advisor_compute import CatalogFit

COLUMNS = ("Model", "Parameters", "Best quant", "Fits", "RAM", "VRAM", "tok/s", "Quality")
TIPS = {
    **COLUMN_TIPS,
    "Model": "A model of the built-in catalog. Enter or a double-click shows all its quantizations.",
    "Parameters": "Weights in the model, in billions: more usually means more capable, and larger.",
    "Best quant": "The quantization the advisor picks for this model on this machine.",
}


class CatalogOverview(QWidget):
    """A ranked table of catalog models; Enter or a double-click opens one in the Advisor."""

    chosen = Signal(str)  # catalog id
    ready = Signal()  # new rows are on screen
    # "Download … and chat": {"repo_id", "quant", "n_ctx", "n_gpu_layers"}, as the panel's pull_requested
    download_requested = Signal(dict)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel("Working out what this machine can run…")
        self.heading.setWordWrap(True)
        self.heading.setAccessibleName("Catalog overview status")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setAccessibleName("Catalog models this machine can run, best first")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setTabKeyNavigation(False)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        set_header_tips(self.table, TIPS)
        self.table.itemActivated.connect(self._activated)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_pick(row))
        lay.addWidget(self.heading)
        lay.addWidget(self.table, 1)
        # the call to action: the best row, or the one the user selected
        cta = QHBoxLayout()
        self.pick_label = QLabel("")
        self.pick_label.setWordWrap(True)
        self.pick_label.setAccessibleName("Recommended download")
        self.download_button = QPushButton("Download and chat")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self._download)
        self.details_button = QPushButton("All its options")
        self.details_button.setAccessibleName("Show all quantizations of the selected model")
        self.details_button.setEnabled(False)
        self.details_button.clicked.connect(self._details)
        cta.addWidget(self.pick_label, 1)
        cta.addWidget(self.details_button)
        cta.addWidget(self.download_button)
        lay.addLayout(cta)
        self.rows: list[CatalogFit] = []
        self._n_ctx = 0
        self._budget: Budget | None = None  # what the rows (or the running task) were ranked for

    def rank_for(self, budget: Budget) -> None:
        """Rank the catalog for ``budget`` off the GUI thread, unless that is what is shown; a newer
        budget cancels an older ranking, whose answer is then dropped."""
        from app.core.advice.policy import DEFAULT_MIN_TOK_S
        from app.core.advice.recommend import DEFAULT_CTX
        from app.gui.panels.advisor_compute import catalog_fits

        if budget == self._budget:
            return
        self._budget = budget
        self.heading.setText("Working out what this machine can run…")

        def done(rows: list[CatalogFit]) -> None:
            self.show_rows(rows, DEFAULT_CTX, DEFAULT_MIN_TOK_S)
            self.ready.emit()

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self._budget = None
            self.heading.setText(f"{msg} {hint}".strip())

        def work(report: Any, cancel: Any) -> list[CatalogFit]:
            return catalog_fits(budget, DEFAULT_CTX, cancel=cancel)

        start_worker(work, owner=self, latest="rank", on_return=done, on_error=failed)

    def show_rows(self, rows: list[CatalogFit], n_ctx: int, min_tok_s: float) -> None:
        from app.core.advice.policy import comfortable
        from app.core.advice.speed_words import format_tok_s
        from app.core.units import format_bytes

        self.rows, self._n_ctx = rows, n_ctx
        n_fit = sum(r.plan is not None for r in rows)
        self.heading.setText(
            f"{n_fit} of {len(rows)} catalog models fit this machine with a {n_ctx:,}-token context: first "
            f"those that write at least {min_tok_s:g} tokens/s (about reading speed), then slower ones, the "
            "most capable first within each. Press Enter or double-click one to see all its options."
        )
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            p = r.plan
            cells = [r.entry.name, f"{r.entry.params_b:g} B"]
            if p is None:
                cells += ["—", fit_words("no"), "—", "—", "—", "—"]
            else:
                slow = "" if comfortable(p.speed.tok_s, min_tok_s) else " (slow)"
                cells += [p.quant, fit_words(p.fits), format_bytes(p.ram_bytes),
                          format_bytes(p.vram_bytes) if p.vram_bytes else "—", format_tok_s(p.speed.tok_s) + slow,
                          p.quality.label]  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, r.entry.id)
                if col == 3:
                    item.setBackground(QBrush(QColor(FITS[p.fits if p else "no"][1])))
                    item.setForeground(QBrush(QColor("#000000")))
                self.table.setItem(i, col, item)
        if self._best_row() >= 0:
            self.table.setCurrentCell(self._best_row(), 0)
        self._show_pick(self.table.currentRow())

    def _best_row(self) -> int:
        """The first row that fits and can be downloaded: the rows are ranked best first."""
        return next((i for i, r in enumerate(self.rows) if r.plan is not None and r.entry.gguf_repos), -1)

    def _row(self, row: int) -> CatalogFit | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def _show_pick(self, row: int) -> None:
        """The call to action follows the selected row; the best row is selected first."""
        from app.core.advice.reasons import tok_s_words
        from app.core.units import format_bytes

        r = self._row(row)
        self.details_button.setEnabled(r is not None)
        if r is None or r.plan is None or not r.entry.gguf_repos:
            why = (
                "does not fit this machine"
                if r is not None and r.plan is None
                else "cannot be downloaded here"
            )
            self.pick_label.setText(f"{r.entry.name} {why}." if r is not None else "")
            self.download_button.setText("Download and chat")
            self.download_button.setEnabled(False)
            return
        p = r.plan
        first = row == self._best_row()
        self.pick_label.setText(
            f"{'Best for this machine' if first else 'Selected'}: {r.entry.name} as {p.quant} — a "
            f"{format_bytes(p.file_bytes)} download, about {tok_s_words(p.speed.tok_s)}, {p.quality.label} quality."
        )
        text = f"Download {p.quant} and chat"
        self.download_button.setText(text)
        self.download_button.setAccessibleName(f"Download {r.entry.name} {p.quant} and chat")
        self.download_button.setToolTip(f"Download {r.entry.name} as {p.quant} from {r.entry.gguf_repos[0]}, "
                                        "then chat with it.")  # fmt: skip
        self.download_button.setEnabled(True)

    def _download(self) -> None:
        r = self._row(self.table.currentRow())
        if r is not None and r.plan is not None and r.entry.gguf_repos:
            self.download_requested.emit({"repo_id": r.entry.gguf_repos[0], "quant": r.plan.quant,
                                          "n_ctx": self._n_ctx, "n_gpu_layers": r.plan.n_gpu_layers})  # fmt: skip

    def _details(self) -> None:
        r = self._row(self.table.currentRow())
        if r is not None:
            self.chosen.emit(r.entry.id)

    def _activated(self, item: QTableWidgetItem) -> None:
        self.chosen.emit(str(item.data(Qt.ItemDataRole.UserRole)))

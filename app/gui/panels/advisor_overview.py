"""The Advisor's first page: what this machine can run from the built-in catalog, best first (the
GUI's ``tailorlm catalog``), so a new user sees options before choosing anything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels.advisor_table import FITS, fit_words
from app.gui.workers import start_worker

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget
    from app.gui.panels.advisor_compute import CatalogFit

COLUMNS = ("Model", "Parameters", "Best quant", "Fits", "RAM", "VRAM", "tok/s", "Quality")


class CatalogOverview(QWidget):
    """A ranked table of catalog models; Enter or a double-click opens one in the Advisor."""

    chosen = Signal(str)  # catalog id
    ready = Signal()  # new rows are on screen

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
        self.table.itemActivated.connect(self._activated)
        lay.addWidget(self.heading)
        lay.addWidget(self.table, 1)
        self.rows: list[CatalogFit] = []
        self._budget: Budget | None = None  # what the rows (or the running task) were ranked for

    def rank_for(self, budget: Budget) -> None:
        """Rank the catalog for ``budget`` off the GUI thread, unless that is what is shown; a newer
        budget cancels an older ranking, whose answer is then dropped."""
        from app.core.advice.recommend import DEFAULT_CTX, DEFAULT_MIN_TOK_S
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
        from app.core.units import format_bytes

        self.rows = rows
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
                slow = " (slow)" if p.speed.tok_s < min_tok_s else ""
                cells += [p.quant, fit_words(p.fits), format_bytes(p.ram_bytes),
                          format_bytes(p.vram_bytes) if p.vram_bytes else "—", f"{p.speed.tok_s:.1f}{slow}",
                          p.quality.label]  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, r.entry.id)
                if col == 3:
                    item.setBackground(QBrush(QColor(FITS[p.fits if p else "no"][1])))
                    item.setForeground(QBrush(QColor("#000000")))
                self.table.setItem(i, col, item)

    def _activated(self, item: QTableWidgetItem) -> None:
        self.chosen.emit(str(item.data(Qt.ItemDataRole.UserRole)))

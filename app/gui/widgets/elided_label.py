"""A one-line label that shortens its text with "…" instead of widening the window.

A plain ``QLabel`` without word wrap is at least as wide as its text, so one long file name makes
the whole window wider. This one asks for a few characters' width, draws what fits with an
ellipsis in the middle (where file names differ least), and keeps the full text in ``text()``, the
tooltip and the accessible description.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QStyleOption

MIN_CHARS = 12  # the narrowest it gets: a name's start and end stay recognisable


class ElidedLabel(QLabel):
    def __init__(self, text: str = "") -> None:
        super().__init__()
        self._own_tip = False  # a tooltip set by the caller (a full path) wins over the text
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setAccessibleDescription(text)
        if not self._own_tip:
            super().setToolTip(text)

    def setToolTip(self, tip: str) -> None:
        super().setToolTip(tip)
        self._own_tip = bool(tip)

    def minimumSizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(fm.averageCharWidth() * MIN_CHARS, fm.height())

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.text()) + 4, self.fontMetrics().height())

    def is_elided(self) -> bool:
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        opt = QStyleOption()
        opt.initFrom(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideMiddle, rect.width())
        self.style().drawItemText(
            painter, rect, int(self.alignment()), opt.palette, self.isEnabled(), shown, self.foregroundRole()
        )

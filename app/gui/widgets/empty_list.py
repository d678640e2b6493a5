"""A list that says what belongs in it while it is empty ("Search to list GGUF repos"), the way a
line edit shows placeholder text. The text is painted, not an item: ``count()`` stays the number
of real rows, and screen readers get it as the list's accessible description."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QListWidget


class EmptyStateList(QListWidget):
    def __init__(self, empty_text: str = "") -> None:
        super().__init__()
        self._empty_text = ""
        self.set_empty_text(empty_text)
        model = self.model()
        model.rowsInserted.connect(self._changed)
        model.rowsRemoved.connect(self._changed)
        model.modelReset.connect(self._changed)

    def empty_text(self) -> str:
        return self._empty_text

    def set_empty_text(self, text: str) -> None:
        self._empty_text = text
        self._changed()

    def _changed(self, *_args: Any) -> None:
        self.setAccessibleDescription(self._empty_text if self.count() == 0 else "")
        self.viewport().update()

    def paintEvent(self, event: Any) -> None:
        super().paintEvent(event)
        if self.count() or not self._empty_text:
            return
        painter = QPainter(self.viewport())
        painter.setPen(self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        rect = self.viewport().rect().adjusted(8, 6, -8, -6)
        flags = Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter | Qt.TextFlag.TextWordWrap
        painter.drawText(rect, int(flags), self._empty_text)

"""A stack of pages that is only as demanding as the page on screen.

``QStackedWidget`` asks for the largest minimum size of all its pages, shown or not, so one wide
panel, once built, keeps the whole window wide on every other panel. This one asks for the
current page's minimum only, and tells the window's layout when the page changes.
"""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QStackedWidget, QWidget


class PageStack(QStackedWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.currentChanged.connect(lambda _i: self.updateGeometry())

    def minimumSizeHint(self) -> QSize:
        page = self.currentWidget()
        if page is None:
            return super().minimumSizeHint()
        hint = page.minimumSizeHint().expandedTo(page.minimumSize())
        frame = 2 * self.frameWidth()
        return QSize(max(0, hint.width()) + frame, max(0, hint.height()) + frame)

    def sizeHint(self) -> QSize:
        page = self.currentWidget()
        return super().sizeHint() if page is None else page.sizeHint().expandedTo(self.minimumSizeHint())

"""A horizontal splitter whose side panes fold away when the window is too narrow for them.

A plain ``QSplitter`` asks for the sum of its panes' minimum widths, so three panes side by side
make the whole window that wide. Here only the main pane counts: when the splitter gets narrower
than the panes that are open need, side panes fold (to width 0, in ``fold_order``), and they open
again, at their old width, when there is room. A pane the user folded by dragging its handle stays
folded; dragging the handle opens it again, as in any splitter.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QSplitter, QWidget


def _min_width(w: QWidget) -> int:
    """The width a layout would not go below (an explicit minimum wins over the hint)."""
    return max(w.minimumWidth(), w.minimumSizeHint().width(), 0)


class SidePaneSplitter(QSplitter):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._main = 0
        self._fold_order: tuple[int, ...] = ()
        self._auto_folded: list[int] = []  # folded by us, last folded last: opened first
        self._open_width: dict[int, int] = {}  # a pane's width before we folded it
        self._fitting = False
        self.splitterMoved.connect(self._moved)

    def set_panes(self, *, main: int, fold_order: tuple[int, ...]) -> None:
        """``main`` never folds; ``fold_order`` lists the side panes, the first to fold first."""
        self._main, self._fold_order = main, fold_order
        self.setCollapsible(main, False)
        for i in fold_order:
            self.setCollapsible(i, True)
            handle = self.handle(i if i > main else i + 1)
            handle.setToolTip("Drag to show or hide the side pane")
        self.updateGeometry()

    def is_folded(self, index: int) -> bool:
        return self.sizes()[index] == 0

    def minimumSizeHint(self) -> QSize:
        w = self.widget(self._main)
        if w is None:
            return super().minimumSizeHint()
        height = max((_pane.minimumSizeHint().height() for _pane in self._panes()), default=0)
        return QSize(_min_width(w) + self.handleWidth() * (self.count() - 1), height)

    def _panes(self) -> list[QWidget]:
        panes = (self.widget(i) for i in range(self.count()))
        return [w for w in panes if w is not None and not w.isHidden()]

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._fit()

    def _needed(self, open_panes: list[int]) -> int:
        """The width the panes ``open_panes`` need at their minimum widths, handles included."""
        widths = (self.widget(i) for i in open_panes)
        return sum(
            _min_width(w) for w in widths if w is not None and not w.isHidden()
        ) + self.handleWidth() * (self.count() - 1)

    def _fit(self) -> None:
        if self._fitting or not self._fold_order:
            return
        sizes = self.sizes()
        width = self.width()
        open_panes = [i for i in range(self.count()) if sizes[i] > 0 or i == self._main]
        changed = False
        for i in self._fold_order:  # fold side panes, in order, until the open ones fit
            if self._needed(open_panes) <= width:
                break
            if i in open_panes:
                self._open_width[i] = sizes[i]
                self._auto_folded.append(i)
                open_panes.remove(i)
                sizes[i] = 0
                changed = True
        # open again what we folded, the last folded first, while it fits at its minimum width
        while self._auto_folded and self._needed([*open_panes, self._auto_folded[-1]]) <= width:
            i = self._auto_folded.pop()
            spare = width - self._needed(open_panes)
            pane = self.widget(i)
            sizes[i] = min(max(self._open_width.pop(i, 0), _min_width(pane) if pane else 0), spare)
            open_panes.append(i)
            changed = True
        if changed:
            # the main pane takes what the side panes leave
            sizes[self._main] = 0
            sizes[self._main] = max(1, width - sum(sizes) - self.handleWidth() * (self.count() - 1))
            self._fitting = True
            try:
                self.setSizes(sizes)
            finally:
                self._fitting = False

    def _moved(self, _pos: int, _index: int) -> None:
        # the user dragged a handle: what they opened is theirs; what they folded stays folded
        if self._fitting:
            return
        sizes = self.sizes()
        self._auto_folded = [i for i in self._auto_folded if sizes[i] == 0]

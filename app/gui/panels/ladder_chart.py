"""The Quality ladder's chart: file size against mean KL divergence, one point per rung — plain ones
as circles, those made with an importance matrix as triangles, in two colours a colour-blind eye
tells apart (blue and orange) — the size/quality front as a line through its points, and each
point's name beside it. Words instead of empty axes until something is measured. pyqtgraph is
imported when the chart is built."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QStackedWidget

from app.gui.panels import ladder_view as view

if TYPE_CHECKING:
    from app.core.advice.ladder import Rung

EMPTY_TEXT = "Choose a model and the types to measure, then Run: each appears here by its size and its loss."
PLAIN_SYMBOL, MATRIX_SYMBOL = "o", "t1"  # circle; triangle pointing up
SYMBOL_PX = 11


class LadderChart(QStackedWidget):
    """``plain``, ``calibrated`` (scatter items) and ``front`` (a line) hold what is drawn."""

    def __init__(self) -> None:
        import pyqtgraph as pg

        super().__init__()
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAccessibleName("No ladder measured yet")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.plot = pg.PlotWidget()
        self.plot.setAccessibleName("File size against mean KL divergence, one point per quantization")
        self.plot.viewport().setAccessibleName(self.plot.accessibleName())  # focusable too (pyqtgraph)
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(-10, 10))
        self.front = self.plot.plot([], [], name="size/quality front")
        self.plain = self.plot.plot([], [], pen=None, symbol=PLAIN_SYMBOL, symbolSize=SYMBOL_PX, name="plain")
        self.calibrated = self.plot.plot([], [], pen=None, symbol=MATRIX_SYMBOL, symbolSize=SYMBOL_PX + 2,
                                         name="with the importance matrix")  # fmt: skip
        self.labels: list[Any] = []
        self.rungs: tuple[Rung, ...] = ()
        self.addWidget(self.empty)
        self.addWidget(self.plot)
        self._restyle()

    def _restyle(self, palette: Any = None) -> None:
        """The palette's colours (light or dark) for the plot, the points, the front and the names."""
        import pyqtgraph as pg

        from app.gui.theme import style_plot

        c = style_plot(self.plot, palette)
        for item, colour in ((self.plain, c.before), (self.calibrated, c.after)):
            item.setSymbolBrush(pg.mkBrush(colour))
            item.setSymbolPen(pg.mkPen(c.foreground, width=0.8))
        self.front.setPen(pg.mkPen(c.foreground, width=1.5, style=Qt.PenStyle.DashLine))
        for label in self.labels:
            label.setColor(c.foreground)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "plot"):  # light ↔ dark
            self._restyle(self.palette())
        super().changeEvent(event)

    def show_rungs(self, rungs: Sequence[Rung]) -> None:
        """Draw ``rungs`` (the words again when there are none)."""
        import pyqtgraph as pg

        self.rungs = tuple(rungs)
        unit_name, unit = view.size_unit([r.size_bytes for r in rungs])
        log = view.log_scale(rungs)
        plain, calibrated, front = view.series(rungs, unit)
        self.plot.setLogMode(y=log)
        for item, s in ((self.plain, plain), (self.calibrated, calibrated), (self.front, front)):
            item.setData(list(s.xs), list(s.ys))
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels = []
        for s, anchor in ((plain, (0, 1)), (calibrated, (0, 0))):  # plain names above, the others below
            for x, y, name in zip(s.xs, s.ys, s.names, strict=True):
                label = pg.TextItem(name, anchor=anchor)
                label.setPos(x, math.log10(y) if log else y)  # text items sit in the view's own (log) units
                self.plot.addItem(label)
                self.labels.append(label)
        self.plot.setLabel("bottom", f"file size ({unit_name})")
        self.plot.setLabel("left", "mean KL divergence" + (" (log scale)" if log else ""))
        self._restyle()
        self.plot.enableAutoRange()
        self.plot.setAccessibleDescription(
            view.gains_sentence(rungs) or f"{len(rungs)} quantizations measured"
        )
        self.setCurrentWidget(self.plot if rungs else self.empty)

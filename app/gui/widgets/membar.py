"""Stacked horizontal bars of memory use against what is available, drawn with QPainter.

One bar per device (RAM, each GPU's VRAM). Each segment is labelled in the legend with its size,
the capacity is a dark line, and anything past it is hatched red, so "does not fit" reads without
colour too; the same facts are in the accessible description for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

# Colour-blind-safe (Tableau 10), one per segment kind; the legend names them too.
SEGMENT_COLOURS = {
    "Weights": "#4e79a7",
    "KV cache": "#f28e2b",
    "Compute": "#59a14f",
    "Output & runtime": "#9c755f",
}
OVER_COLOUR = "#b3261e"
ROW_HEIGHT = 22
LABEL_WIDTH = 120
VALUE_WIDTH = 160  # "1.23 GiB / 21.1 GiB" right of each bar
LEGEND_HEIGHT = 22


@dataclass(frozen=True)
class Bar:
    """One device: named segments in bytes and the bytes it may use."""

    label: str  # "RAM", "VRAM"
    segments: tuple[tuple[str, int], ...]
    capacity_bytes: int
    detail: str = ""  # said in the description, not drawn: "NVIDIA GeForce RTX 4060 Laptop GPU"

    @property
    def total_bytes(self) -> int:
        return sum(n for _, n in self.segments)

    def share(self, name: str) -> float:
        """Fraction of this bar's total that segment ``name`` takes (0 when empty)."""
        total = self.total_bytes
        return sum(n for k, n in self.segments if k == name) / total if total else 0.0


class MemoryBar(QWidget):
    """Paints :class:`Bar` rows; ``set_bars`` replaces them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bars: tuple[Bar, ...] = ()
        self.setAccessibleName("Memory breakdown")
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable, so screen readers announce it
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._relayout()

    def set_bars(self, bars: list[Bar] | tuple[Bar, ...]) -> None:
        from app.core.units import format_bytes

        self.bars = tuple(bars)
        lines = []
        for b in self.bars:
            parts = ", ".join(f"{k} {format_bytes(n)}" for k, n in b.segments if n)
            verdict = "fits" if b.total_bytes <= b.capacity_bytes else "does not fit"
            lines.append(
                f"{b.label}{f' ({b.detail})' if b.detail else ''}: {format_bytes(b.total_bytes)} of {format_bytes(b.capacity_bytes)} available, "
                f"{verdict} ({parts})"
            )
        text = "\n".join(lines) or "No plan selected"
        self.setAccessibleDescription(text)
        self.setToolTip(text)
        self._relayout()
        self.update()

    def _relayout(self) -> None:
        self.setFixedHeight(LEGEND_HEIGHT + max(1, len(self.bars)) * (ROW_HEIGHT + 8) + 8)

    def sizeHint(self) -> QSize:
        return QSize(480, self.height())

    def paintEvent(self, event: object) -> None:
        from app.core.units import format_bytes

        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        width = max(10, self.width() - LABEL_WIDTH - VALUE_WIDTH)
        y = 4
        for b in self.bars:
            scale = width / max(b.total_bytes, b.capacity_bytes, 1)
            p.setPen(text)
            p.drawText(QRectF(0, y, LABEL_WIDTH - 6, ROW_HEIGHT), Qt.AlignmentFlag.AlignVCenter, b.label)
            x = float(LABEL_WIDTH)
            p.fillRect(QRectF(x, y, b.capacity_bytes * scale, ROW_HEIGHT), pal.color(QPalette.ColorRole.Base))
            for name, n in b.segments:
                w = n * scale
                p.fillRect(QRectF(x, y, w, ROW_HEIGHT), QColor(SEGMENT_COLOURS.get(name, "#bab0ac")))
                x += w
            if b.total_bytes > b.capacity_bytes:
                over = QRectF(LABEL_WIDTH + b.capacity_bytes * scale, y, (b.total_bytes - b.capacity_bytes) * scale,
                              ROW_HEIGHT)  # fmt: skip
                p.fillRect(over, QBrush(QColor(OVER_COLOUR), Qt.BrushStyle.BDiagPattern))
            cap_x = LABEL_WIDTH + b.capacity_bytes * scale
            p.setPen(QPen(text, 2))
            p.drawLine(int(cap_x), y - 3, int(cap_x), y + ROW_HEIGHT + 3)
            p.setPen(text)
            p.drawText(QRectF(LABEL_WIDTH + width + 6, y, VALUE_WIDTH - 6, ROW_HEIGHT), Qt.AlignmentFlag.AlignVCenter,
                       f"{format_bytes(b.total_bytes)} / {format_bytes(b.capacity_bytes)}")  # fmt: skip
            y += ROW_HEIGHT + 8
        x = float(LABEL_WIDTH)
        for name, colour in SEGMENT_COLOURS.items():
            p.fillRect(QRectF(x, y + 5, 12, 12), QColor(colour))
            p.setPen(text)
            label_w = p.fontMetrics().horizontalAdvance(name) + 24
            p.drawText(QRectF(x + 16, y, label_w, LEGEND_HEIGHT), Qt.AlignmentFlag.AlignVCenter, name)
            x += label_w + 8
        p.setPen(QPen(text, 2))
        p.drawLine(int(x), y + 4, int(x), y + 18)
        p.drawText(QRectF(x + 6, y, 120, LEGEND_HEIGHT), Qt.AlignmentFlag.AlignVCenter, "available")
        p.end()

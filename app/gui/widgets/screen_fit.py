"""Keep a window on its screen: a saved geometry from a larger monitor (or one the window grew to)
is shrunk and moved into the screen's available area when it is restored."""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QWidget


def fit_rect(rect: QRect, available: QRect) -> QRect:
    """``rect`` shrunk to at most ``available``'s size and moved inside it."""
    width = max(1, min(rect.width(), available.width()))
    height = max(1, min(rect.height(), available.height()))
    left = min(max(rect.left(), available.left()), available.left() + available.width() - width)
    top = min(max(rect.top(), available.top()), available.top() + available.height() - height)
    return QRect(left, top, width, height)


def fit_to_screen(window: QWidget) -> None:
    """Shrink and move ``window``, frame included, into its screen's available geometry."""
    screen = window.screen()
    if screen is None:
        return
    frame, inner = window.frameGeometry(), window.geometry()
    fitted = fit_rect(frame, screen.availableGeometry())
    if fitted.size() != frame.size():
        window.resize(inner.width() - (frame.width() - fitted.width()),
                      inner.height() - (frame.height() - fitted.height()))  # fmt: skip
    if fitted.topLeft() != frame.topLeft():
        window.move(fitted.topLeft())

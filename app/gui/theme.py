"""Light and dark, the Qt way: the window follows the system's colour scheme (Qt 6.5+
``QStyleHints.colorScheme``) unless the user picks Light or Dark (View menu, kept in the settings).

The app runs the Fusion style (:mod:`app.gui.app`). "System" keeps the platform's own palette and
follows ``colorSchemeChanged``; where the platform reports a dark scheme but hands Fusion a light
palette, the dark palette below stands in. An explicit choice asks the platform for that scheme
(native title bars) and sets the matching palette. Plots are not widgets that follow a palette by
themselves: :func:`style_plot` gives a pyqtgraph plot the palette's colours, and the panels call it
again when their palette changes (``QEvent.PaletteChange``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette

CHOICES = ("system", "light", "dark")
_CHOICE_PROPERTY = "tailorlmTheme"  # on the QApplication: what the user chose, for follow_system
_FOLLOWING_PROPERTY = "tailorlmFollowsScheme"  # colorSchemeChanged is connected (once per app)
DARK_LIGHTNESS = 128  # a window colour darker than mid-grey (HSL lightness 0-255) is a dark theme

_R = QPalette.ColorRole
# Light: Qt's own default palette as Fusion resolves it without a platform theme (read from Qt
# 6.11 offscreen). Dark: the same roles in the same spirit — grey surfaces, a darker base for text
# fields, a blue accent that keeps 4.5:1 contrast with white text (WCAG AA).
_LIGHT = {
    _R.Window: "#efefef", _R.WindowText: "#000000", _R.Base: "#ffffff", _R.AlternateBase: "#f7f7f7",
    _R.ToolTipBase: "#ffffdc", _R.ToolTipText: "#000000", _R.PlaceholderText: "#80000000",
    _R.Text: "#000000", _R.Button: "#efefef", _R.ButtonText: "#000000", _R.BrightText: "#ffffff",
    _R.Light: "#ffffff", _R.Midlight: "#cacaca", _R.Mid: "#b8b8b8", _R.Dark: "#9f9f9f",
    _R.Shadow: "#767676", _R.Highlight: "#308cc6", _R.Accent: "#308cc6", _R.HighlightedText: "#ffffff",
    _R.Link: "#0000ff", _R.LinkVisited: "#ff00ff",
}  # fmt: skip
_DARK = {
    _R.Window: "#2d2d2d", _R.WindowText: "#e8e8e8", _R.Base: "#1f1f1f", _R.AlternateBase: "#292929",
    _R.ToolTipBase: "#3a3a3a", _R.ToolTipText: "#e8e8e8", _R.PlaceholderText: "#80e8e8e8",
    _R.Text: "#e8e8e8", _R.Button: "#353535", _R.ButtonText: "#e8e8e8", _R.BrightText: "#ffffff",
    _R.Light: "#4a4a4a", _R.Midlight: "#3e3e3e", _R.Mid: "#2a2a2a", _R.Dark: "#1c1c1c",
    _R.Shadow: "#0f0f0f", _R.Highlight: "#2f6fb0", _R.Accent: "#2f6fb0", _R.HighlightedText: "#ffffff",
    _R.Link: "#6cb4ff", _R.LinkVisited: "#c49bff",
}  # fmt: skip
_DISABLED = {"light": "#bebebe", "dark": "#7a7a7a"}  # text, window text and button text, disabled


def palette_for(scheme: str) -> QPalette:
    """The palette of ``"light"`` or ``"dark"``."""
    palette = QPalette()
    for role, colour in (_DARK if scheme == "dark" else _LIGHT).items():
        palette.setColor(role, QColor(colour))
    for role in (_R.Text, _R.WindowText, _R.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(_DISABLED[scheme]))
    return palette


def is_dark(palette: QPalette | None = None) -> bool:
    p = palette if palette is not None else QGuiApplication.palette()
    return p.color(_R.Window).lightness() < DARK_LIGHTNESS


def current_choice() -> str:
    app = QGuiApplication.instance()
    choice = app.property(_CHOICE_PROPERTY) if app is not None else None
    return str(choice) if choice in CHOICES else "system"


def apply_theme(choice: str) -> None:
    """Use ``choice`` ("system", "light" or "dark") for the whole app, now and until changed."""
    app = QGuiApplication.instance()
    if not isinstance(app, QGuiApplication):
        return
    choice = choice if choice in CHOICES else "system"
    app.setProperty(_CHOICE_PROPERTY, choice)
    hints = app.styleHints()
    if not app.property(_FOLLOWING_PROPERTY):
        hints.colorSchemeChanged.connect(follow_system)
        app.setProperty(_FOLLOWING_PROPERTY, True)
    if choice == "system":
        hints.unsetColorScheme()
    else:  # the platform's own parts (title bars) follow, where it supports that
        hints.setColorScheme(Qt.ColorScheme.Dark if choice == "dark" else Qt.ColorScheme.Light)
    _set_palette(app, choice, hints.colorScheme())


def follow_system(scheme: Qt.ColorScheme) -> None:
    """The system switched between light and dark: follow it, unless the user chose one."""
    app = QGuiApplication.instance()
    if isinstance(app, QGuiApplication) and current_choice() == "system":
        _set_palette(app, "system", scheme)


def _set_palette(app: QGuiApplication, choice: str, scheme: Qt.ColorScheme) -> None:
    if choice != "system":
        app.setPalette(palette_for(choice))
        return
    app.setPalette(QPalette())  # the platform's palette: nothing of ours overrides it
    if scheme == Qt.ColorScheme.Dark and not is_dark(app.palette()):
        app.setPalette(palette_for("dark"))  # a dark desktop that handed Fusion a light palette


# --- plots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlotColors:
    """A plot's colours for one palette; series colours are chosen to read on its background."""

    background: QColor
    foreground: QColor  # axes, ticks, titles, legend text
    machine: QColor  # the whole machine's use (Machine panel)
    model: QColor  # the loaded model's share (Machine panel)
    before: QColor  # weights as in the file (quantization panel)
    after: QColor  # weights after quantizing

    def fill(self, colour: QColor, alpha: int = 90) -> QColor:
        """``colour`` see-through, for the area under a line."""
        c = QColor(colour)
        c.setAlpha(alpha)
        return c


# Tableau 10 blue, red and orange (matplotlib's default cycle) on light; lighter tints of the same
# hues on dark, so each keeps at least 4.5:1 contrast with its background.
_SERIES = {
    False: ("#1f77b4", "#d62728", "#4e79a7", "#f28e2b"),
    True: ("#6cb4f0", "#ff7b72", "#8fb8e8", "#ffb05c"),
}


def plot_colors(palette: QPalette | None = None) -> PlotColors:
    p = palette if palette is not None else QGuiApplication.palette()
    machine, model, before, after = (QColor(c) for c in _SERIES[is_dark(p)])
    return PlotColors(QColor(p.color(_R.Base)), QColor(p.color(_R.Text)), machine, model, before, after)


def style_plot(widget: Any, palette: QPalette | None = None) -> PlotColors:
    """Give a pyqtgraph ``PlotWidget`` the background, axes, title and legend colours of
    ``palette`` (by default its own; a panel that hears of a new palette passes its own, since its
    children may hear of it after it); the caller colours its series from the returned colours."""
    colors = plot_colors(palette if palette is not None else widget.palette())
    fg = colors.foreground
    widget.setBackground(colors.background)
    item = widget.getPlotItem()
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        axis.setPen(fg)
        axis.setTextPen(fg)  # the tick labels and the axis label
    title = item.titleLabel
    if title.text:
        title.setText(title.text, color=fg.name())
    legend = item.legend
    if legend is not None:
        legend.setBrush(colors.fill(colors.background, 200))
        legend.setLabelTextColor(fg)
        for _, label in legend.items:  # setLabelTextColor keeps the labels' old text until redrawn
            label.setText(label.text)
    return colors

"""The navigation's icons: small line drawings in ``resources/icons/<name>.svg`` whose strokes are
``currentColor``, drawn here in the palette's text colour (the highlighted-text colour when
selected), so they read in light and dark alike. A missing file falls back to a standard Qt icon."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QWidget

SIZES_PX = (16, 20, 24, 32, 40, 48)  # 16-24 px items, at 1× and 2× device pixel ratios
_FALLBACK = {  # QStyle's own, where an SVG is missing (a trimmed bundle)
    "machine": QStyle.StandardPixmap.SP_ComputerIcon,
    "advisor": QStyle.StandardPixmap.SP_MessageBoxInformation,
    "quantviz": QStyle.StandardPixmap.SP_FileDialogContentsView,
    "library": QStyle.StandardPixmap.SP_DirIcon,
    "convert": QStyle.StandardPixmap.SP_BrowserReload,
    "chat": QStyle.StandardPixmap.SP_FileDialogDetailedView,
    "server": QStyle.StandardPixmap.SP_DriveNetIcon,
}
_G, _R = QPalette.ColorGroup, QPalette.ColorRole
_MODES = (  # icon mode → the palette colour it is drawn in
    (QIcon.Mode.Normal, _G.Active, _R.Text),
    (QIcon.Mode.Active, _G.Active, _R.Text),
    (QIcon.Mode.Selected, _G.Active, _R.HighlightedText),
    (QIcon.Mode.Disabled, _G.Disabled, _R.Text),
)


def svg_path(name: str) -> Path:
    from app.gui.app import resources_dir

    return resources_dir() / "icons" / f"{name}.svg"


def tinted_icon(name: str, widget: QWidget) -> QIcon:
    """``resources/icons/<name>.svg`` in ``widget``'s palette colours."""
    from PySide6.QtSvg import QSvgRenderer

    try:
        svg = svg_path(name).read_text(encoding="utf-8")
    except OSError:
        return widget.style().standardIcon(_FALLBACK.get(name, QStyle.StandardPixmap.SP_FileIcon))
    palette = widget.palette()
    icon = QIcon()
    for mode, group, role in _MODES:
        renderer = QSvgRenderer(
            QByteArray(svg.replace("currentColor", palette.color(group, role).name()).encode())
        )
        for px in SIZES_PX:
            pixmap = QPixmap(px, px)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            renderer.render(painter)
            painter.end()
            icon.addPixmap(pixmap, mode)
    return icon

"""Help → About: what this is and which versions run it — TailorLM, llama.cpp (through the
installed llama-cpp-python), Qt — and the licence. Versions come from the installed packages'
metadata, so nothing heavy (llama.cpp's library) is loaded to say them."""

from __future__ import annotations

from html import escape
from importlib import metadata

from PySide6.QtWidgets import QMessageBox, QWidget

LICENCE = "Apache-2.0"  # pyproject.toml [project] license; the metadata says so when installed


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """{"TailorLM", "llama.cpp", "Qt", "licence"}: each a short line of plain text."""
    import PySide6
    from PySide6.QtCore import qVersion

    import app

    licence = LICENCE
    try:  # the bundle carries no metadata of its own: then the constant above
        meta = metadata.metadata("tailorlm")
        licence = (meta.get_all("License-Expression") or meta.get_all("License") or [LICENCE])[0]
    except metadata.PackageNotFoundError:
        pass
    llama = _version("llama-cpp-python") or _version("llama_cpp_python")
    return {
        "TailorLM": _version("tailorlm") or app.__version__,
        "llama.cpp": f"llama-cpp-python {llama}" if llama else "not installed (llama-cpp-python)",
        "Qt": f"{qVersion()} (PySide6 {PySide6.__version__})",
        "licence": licence,
    }


def about_text() -> str:
    v = versions()
    return (
        f"<h3>TailorLM {escape(v['TailorLM'])}</h3>"
        "<p>Which language model, at which quantization, fits this machine — and runs it offline.</p>"
        f"<p>llama.cpp: {escape(v['llama.cpp'])}<br>Qt: {escape(v['Qt'])}<br>"
        f"Licence: {escape(v['licence'])}</p>"
    )


def show_about(parent: QWidget) -> QMessageBox:
    """The About box, window-modal and not blocking (so the window, and tests, go on running)."""
    from PySide6.QtCore import Qt

    box = QMessageBox(parent)
    box.setWindowTitle("About TailorLM")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_text())
    box.setAccessibleName("About TailorLM")
    icon = parent.windowIcon()
    if not icon.isNull():
        box.setIconPixmap(icon.pixmap(64, 64))
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box

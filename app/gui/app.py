"""Start the desktop app: QApplication, the main window, then the hardware detection in the
background. Heavy modules (numpy, llama.cpp, pyqtgraph) load when a panel needs them."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from app.core.logs import setup_logging
    from app.gui.context import AppContext
    from app.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(list(argv if argv is not None else sys.argv))
    app.setApplicationName("TailorLM")
    app.setOrganizationName("TailorLM")
    app.setStyle("Fusion")  # follows the system's light/dark scheme (Qt 6.5+)
    ctx = AppContext()
    window = MainWindow(ctx)
    # An unexpected error anywhere: a report in the log folder, and the window says where it is.
    setup_logging(on_crash=lambda report: ctx.error.emit(
        "TailorLM hit an unexpected error and kept running.", f"A report was written to {report}."))  # fmt: skip
    icon = resources_dir() / "icons" / "tailorlm-256.png"
    if icon.exists():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    window.show()
    ctx.detect()
    if os.environ.get("TAILORLM_SMOKE_TEST"):  # packaging test: say the window is up, then quit
        from PySide6.QtCore import QTimer

        def report() -> None:
            sys.stdout.write(f"window shown: {window.isVisible()} title={window.windowTitle()}\n")
            sys.stdout.flush()
            app.quit()

        QTimer.singleShot(500, report)
    code = int(app.exec())
    from app.gui.workers import shutdown_workers

    shutdown_workers()
    return code


def resources_dir() -> Path:
    """``resources/`` beside the source tree, or inside the PyInstaller bundle."""
    base = getattr(sys, "_MEIPASS", None)
    return Path(base) / "resources" if base else Path(__file__).resolve().parents[2] / "resources"

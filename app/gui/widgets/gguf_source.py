"""The model choice a panel that works on one GGUF shares with the others: the library's models in
a combo box and a file dialog, both ending in the panel's ``open_path``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QFileDialog


class GgufSource:
    """Mixed into a panel (a QWidget) that has ``ctx``, ``library_combo`` and ``open_path(str)``."""

    ctx: Any
    library_combo: Any
    open_path: Callable[[str], None]  # the panel's own: what to do with the chosen file

    def refresh_library(self) -> None:
        from app.gui.widgets.library_combo import refresh_library_combo

        refresh_library_combo(self, self.ctx.library, self.library_combo)

    def _library_chosen(self) -> None:
        path = self.library_combo.currentData()
        if path:
            self.open_path(str(path))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.open_path(path)

"""The Convert panel's "llama.cpp's converter" box: whether the converter's own Python environment
(torch and the converter, about 1.2 GB from PyPI) exists, and setting it up once — pip's output
shown as it comes, the button turned into Cancel meanwhile. Hidden once the converter is ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QGroupBox, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

from app.gui.context import AppContext
from app.gui.workers import Worker, start_worker

SETUP_TEXT = "Set &up the converter (downloads about 1.2 GB once)"


class ConverterSetup(QGroupBox):
    """``ready``: the converter exists (None until known); ``on_change`` runs whenever ``ready`` or
    ``task`` changes, so the panel can enable its buttons."""

    def __init__(self, ctx: AppContext, label: QLabel, *, on_change: Callable[[], None]) -> None:
        super().__init__("llama.cpp's converter")
        self.ctx, self.label, self.on_change = ctx, label, on_change
        self.ready: bool | None = None
        self.task: Worker | None = None  # the set-up running now
        self.button = QPushButton(SETUP_TEXT)
        self.button.setAccessibleName("Set up the converter, downloading about 1.2 GB once")
        self.button.clicked.connect(self.set_up)
        self.button.hide()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        self.log.setMaximumHeight(140)
        self.log.setAccessibleName("Converter set-up log")
        self.log.hide()
        lay = QVBoxLayout(self)
        for w in (self.label, self.button, self.log):
            lay.addWidget(w)

    def check(self) -> None:
        """Find out, off the GUI thread, whether the converter's environment exists."""
        from app.core.build.convert import converter_ready

        def done(ready: bool) -> None:
            self.ready = ready
            self.setVisible(not ready)
            self.button.setVisible(not ready)
            self.label.setText("" if ready else "llama.cpp's converter runs in a Python environment of its "
                               "own (torch and the converter), downloaded from PyPI once. A GGUF needs none.")  # fmt: skip
            self.on_change()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            if not cancelled:
                self.ctx.error.emit(message, hint)

        start_worker(lambda r, c: converter_ready(), owner=self, latest="converter", on_return=done,
                     on_error=failed)  # fmt: skip

    def set_up(self) -> None:
        """Set the converter up; pressed again while it runs, cancel."""
        from app.core.build.convert import setup_converter

        if self.task is not None:
            self.task.cancel()  # the button reads "Cancel the set-up" meanwhile
            return
        self.log.clear()
        self.log.show()
        self.button.setText("Cancel the set-&up")

        def finish(_: Any = None) -> None:
            self.task = None
            self.button.setText(SETUP_TEXT)
            self.on_change()
            self.check()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.log.appendPlainText(f"{message} {hint}".strip())
            if not cancelled:
                self.ctx.error.emit(message, hint)
            finish()

        self.task = start_worker(lambda report, cancel: setup_converter(on_line=report, cancel=cancel),
                                 owner=self, on_yield=self.log.appendPlainText, on_return=finish,
                                 on_error=failed)  # fmt: skip
        self.on_change()

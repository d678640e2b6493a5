"""The Machine panel's workers: other machines that lend their memory (``tailorlm worker`` there),
listed with each device's free memory and the round trip to it. The advisor and the chat plan over
the usable ones; the list is remembered."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from app.gui.context import AppContext

HOW_TO = (
    "On the other machine run `tailorlm worker --mem 8GB` (it listens on 127.0.0.1:50052), then reach "
    "it from here through an SSH tunnel: `ssh -N -L 50052:127.0.0.1:50052 that-machine`, and add "
    "127.0.0.1:50052 below. The protocol has no password: never expose a worker to a network you do not trust."
)


def describe_workers(workers: tuple[Any, ...]) -> str:
    """One line per worker device (or per worker that cannot be used), plain text."""
    from app.core.machine.workers import worker_lines

    return "\n".join(worker_lines(workers)) or "No workers: plans use this machine only."


class WorkersBox(QGroupBox):
    def __init__(self, ctx: AppContext) -> None:
        super().__init__("Workers (other machines lending memory)")
        self.ctx = ctx
        layout = QVBoxLayout(self)
        how = QLabel(HOW_TO)
        how.setWordWrap(True)
        layout.addWidget(how)
        row = QHBoxLayout()
        self.edit = QLineEdit(ctx.workers_text)
        self.edit.setPlaceholderText("HOST:PORT, HOST:PORT")
        self.edit.setAccessibleName("Workers, as HOST:PORT separated by commas")
        self.check_button = QPushButton("Chec&k workers")
        self.check_button.setAccessibleName("Ask the workers for their memory")
        self.check_button.clicked.connect(self.check)
        self.edit.returnPressed.connect(self.check)
        row.addWidget(self.edit, 1)
        row.addWidget(self.check_button)
        layout.addLayout(row)
        self.list = QLabel(describe_workers(ctx.workers))
        self.list.setWordWrap(True)
        self.list.setAccessibleName("Workers found")
        self.list.setTextFormat(Qt.TextFormat.PlainText)
        self.list.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.list)
        ctx.workers_ready.connect(self.show_workers)
        if ctx.workers_text and not ctx.workers:
            self.check()

    def check(self) -> None:
        if self.ctx.check_workers(self.edit.text()):
            self.list.setText("Asking the workers…")

    def show_workers(self, workers: tuple[Any, ...]) -> None:
        self.list.setText(describe_workers(workers))

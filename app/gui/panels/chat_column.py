"""The middle of the Chat panel: the model bar, the notes under it, the conversation, the message
box and its buttons. Layout only; the panel connects and drives it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app.gui.panels.chat_model_bar import ModelBar
from app.gui.panels.chat_view import MessageView


def _button(text: str, name: str, slot: Callable[[], None], tip: str) -> QPushButton:
    b = QPushButton(text)
    b.setAccessibleName(name)
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b


def _note(name: str, text: str = "") -> QLabel:
    """A line of text under the model bar, hidden until there is something to say."""
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.hide()
    return label


class ChatColumn(QWidget):
    def __init__(
        self, *, send: Callable[[], None], stop: Callable[[], None], regenerate: Callable[[], None]
    ) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        self.model_bar = ModelBar()
        self.status = self.model_bar.status
        lay.addWidget(self.model_bar)
        self.error = _note("Chat error")
        self.error.setStyleSheet("color: #b3261e")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice = _note("Chat notice")  # about the chat, not the model: stopping, older turns left out, …
        self.view = MessageView()
        self.edit_note = _note(
            "Editing note", "Editing an earlier message: sending answers again from there. Esc cancels."
        )
        for w, stretch in ((self.error, 0), (self.notice, 0), (self.view, 1), (self.edit_note, 0)):
            lay.addWidget(w, stretch)
        self.input = QPlainTextEdit()
        self.input.setAccessibleName("Message to the model")
        self.input.setPlaceholderText("Type a message — Ctrl+Enter sends")
        self.input.setTabChangesFocus(True)
        self.input.setMaximumHeight(110)
        lay.addWidget(self.input)
        row = QHBoxLayout()
        self.send = _button("Send", "Send the message", send, "Send (Ctrl+Enter)")
        self.stop = _button("Stop", "Stop the answer", stop, "Stop (Esc)")
        self.regen = _button("Regenerate", "Answer the last message again", regenerate, "Regenerate (Ctrl+R)")
        row.addStretch(1)
        for b in (self.regen, self.stop, self.send):
            row.addWidget(b)
        lay.addLayout(row)

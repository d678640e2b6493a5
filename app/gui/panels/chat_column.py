"""The middle of the Chat panel: the model bar, the notes under it, the conversation, the message
box and its buttons. Layout only; the panel connects and drives it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels.chat_model_bar import ModelBar
from app.gui.panels.chat_view import MessageView

ERROR_COLOUR = "#b3261e"  # Material's error red: readable on light and dark backgrounds


def _button(text: str, name: str, slot: Callable[[], None] | None, tip: str) -> QPushButton:
    b = QPushButton(text)
    b.setAccessibleName(name)
    b.setToolTip(tip)
    if slot is not None:
        b.clicked.connect(slot)
    return b


def _note(name: str, text: str = "") -> QLabel:
    """A line of text under the model bar, hidden until there is something to say."""
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.hide()
    return label


class NoteWithActions(QWidget):
    """A line of text with buttons beside it (what went wrong and what to do about it, as buttons
    rather than instructions); hidden while it has nothing to say."""

    def __init__(self, name: str, *, error: bool = False) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = _note(name)
        self.label.show()
        if error:
            self.label.setStyleSheet(f"color: {ERROR_COLOUR}")
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        self._buttons = lay
        self.hide()

    def add_action(self, text: str, name: str, tip: str) -> QPushButton:
        b = _button(text, name, None, tip)
        b.hide()
        self._buttons.addWidget(b, 0, Qt.AlignmentFlag.AlignTop)
        return b

    def text(self) -> str:
        return self.label.text()

    def show_text(self, text: str, *actions: QPushButton) -> None:
        """Say ``text`` with ``actions`` shown (the others hidden); "" hides the whole line."""
        self.label.setText(text)
        for i in range(1, self._buttons.count()):
            item = self._buttons.itemAt(i)
            w = item.widget() if item is not None else None
            if w is not None:
                w.setVisible(w in actions)
        self.setVisible(bool(text))


class ChatColumn(QWidget):
    def __init__(
        self, *, send: Callable[[], None], stop: Callable[[], None], regenerate: Callable[[], None]
    ) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        self.model_bar = ModelBar()
        self.status = self.model_bar.status
        lay.addWidget(self.model_bar)
        self.error = NoteWithActions("Chat error", error=True)
        # the model process died: buttons, not instructions
        self.load_again = self.error.add_action(
            "Load again", "Load the model again", "Load the same model with the same settings"
        )
        self.smaller_plan = self.error.add_action(
            "Choose a smaller plan", "Choose a smaller plan in the Advisor",
            "Open the Advisor for this model: a smaller quantization, a shorter context or fewer GPU layers",
        )  # fmt: skip
        self.offer = NoteWithActions("This chat's own model")  # an old chat written by another model
        self.offer_button = self.offer.add_action(
            "Load it", "Load this chat's own model", "Load the model this chat was written with"
        )
        self.notice = _note("Chat notice")  # about the chat, not the model: stopping, older turns left out, …
        self.view = MessageView()
        self.edit_note = _note(
            "Editing note", "Editing an earlier message: sending answers again from there. Esc cancels."
        )
        for w, stretch in ((self.error, 0), (self.offer, 0), (self.notice, 0), (self.view, 1), (self.edit_note, 0)):  # fmt: skip
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

    def set_tab_order(self) -> None:
        """Tab from the message box reaches Send first, then Stop and Regenerate — before the side
        pane's settings. Call once the column is in the window (the order is the window's)."""
        QWidget.setTabOrder(self.input, self.send)
        QWidget.setTabOrder(self.send, self.stop)
        QWidget.setTabOrder(self.stop, self.regen)

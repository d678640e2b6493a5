"""The conversation as a column of message widgets, one per turn.

One widget per message means a streaming answer re-renders only itself: tokens are buffered as
they arrive and the answer's Markdown is redrawn at most 20 times a second; earlier messages are
never touched. Each message has real buttons (Copy, and Edit for the user's turns) so they are in
the tab order and named for screen readers; code blocks carry a "Copy code" link. An answer is
headed by the model that wrote it and shows its numbers on hover; a message with other versions
(a regenerated answer, an edited question) has ``‹ 2/3 ›`` to switch to them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPalette, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.answer_stats import answer_stats
from app.gui.panels.chat_markdown import copied_index, render_markdown, stable_prefix
from app.gui.widgets.live_region import LiveRegion

STREAM_RENDER_MS = 50  # redraw a streaming answer at ~20 fps: smooth to the eye, cheap on 2 cores
_ROLE_TITLES = {"user": "You", "assistant": "Model", "system": "System prompt"}
_STATUS_NOTES = {"partial": " (stopped)", "error": " (failed)"}
_COPY_NAMES = {
    "user": "Copy your message",
    "assistant": "Copy the answer",
    "system": "Copy the system prompt",
}


def _is_dark(widget: QWidget) -> bool:
    return widget.palette().color(QPalette.ColorRole.Window).lightness() < 128


class RichText(QTextBrowser):
    """Rendered Markdown, exactly as tall as its content: the conversation scrolls, not each message.

    A text browser rather than a label: a label lays rich text out several times per change (six
    times slower on an 8 KB answer), a document once.
    """

    def __init__(self, name: str, *, dark: bool) -> None:
        super().__init__()
        self.dark = dark
        self.source_html = ""  # what we rendered (Qt's toHtml() rewrites it)
        self.code_blocks: tuple[str, ...] = ()
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)  # the message's background, like a label
        self.setAccessibleName(name)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.anchorClicked.connect(self._on_link)

    def show_markdown(self, text: str) -> None:
        rendered = render_markdown(text, dark=self.dark)
        self.source_html, self.code_blocks = rendered.html, rendered.code_blocks
        self.setHtml(rendered.html)
        self._fit()

    def _fit(self, *_: object) -> None:
        self.setFixedHeight(math.ceil(self.document().size().height()) + 2 * self.frameWidth())

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # the conversation scrolls

    @Slot(QUrl)
    def _on_link(self, url: QUrl) -> None:
        href = url.toString()
        index = copied_index(href)
        if index is not None and index < len(self.code_blocks):
            QGuiApplication.clipboard().setText(self.code_blocks[index])
        elif href.startswith(("http://", "https://")):
            QDesktopServices.openUrl(url)


class MessageWidget(QFrame):
    """One turn: who said it, the rendered text, Copy (and Edit for the user's own turns).

    While streaming, the text is split where it is finished (:func:`stable_prefix`): finished
    blocks are drawn once into their own RichText, and only the growing tail is drawn again.
    """

    # (message id, its text): the user wants to rewrite this question and continue from it
    edit_requested = Signal(int, str)
    # message id of another version of this message, to show its branch
    branch_requested = Signal(int)

    def __init__(self, role: str, text: str, *, message_id: int | None = None, status: str = "complete",
                 dark: bool = False, model: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.role, self.message_id, self.dark = role, message_id, dark
        self.text = ""
        self.bodies: list[RichText] = []
        self._frozen = 0  # characters of text drawn into finished bodies
        self._tip = ""
        self.live = LiveRegion(self)  # a streamed answer is said as it comes (screen readers)
        self.branch: Any = None  # the core Branch shown by ‹ n/m ›, if the message has other versions
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._name = _ROLE_TITLES.get(role, role)
        self._status = status
        self._lay = QVBoxLayout(self)
        head = QHBoxLayout()
        self.title = QLabel()
        # a long model name is cut, not the buttons beside it (the whole name is in the tooltip)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.set_model(model)
        head.addWidget(self.title, 1)
        self.previous_button = self._arrow("‹", "Show the previous version of this message", -1)
        self.version = QLabel()
        self.version.setAccessibleName("Version")
        self.next_button = self._arrow("›", "Show the next version of this message", 1)
        for w in (self.previous_button, self.version, self.next_button):
            w.hide()
            head.addWidget(w)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setAccessibleName(_COPY_NAMES.get(role, "Copy the message"))
        self.copy_button.clicked.connect(self.copy_text)
        head.addWidget(self.copy_button)
        self.edit_button: QPushButton | None = None
        if role == "user":
            self.edit_button = QPushButton("Edit")
            self.edit_button.setAccessibleName("Edit this message and answer again from here")
            self.edit_button.setEnabled(message_id is not None)
            self.edit_button.clicked.connect(self._on_edit)
            head.addWidget(self.edit_button)
        self._lay.addLayout(head)
        self._text_column = QVBoxLayout()
        self._text_column.setSpacing(0)  # a streamed answer's parts read as one text
        self._lay.addLayout(self._text_column)
        self.set_text(text)

    def set_text(self, text: str) -> None:
        """The whole message in one body (a stored message, or the end of a stream)."""
        for body in self.bodies[:-1]:
            body.deleteLater()
        self.bodies = self.bodies[-1:] or [self._add_body()]
        self.text, self._frozen = text, 0
        self.bodies[0].show_markdown(text or "…")
        self.bodies[0].show()

    def stream_text(self, text: str) -> None:
        """A longer version of the text while the answer streams."""
        self.text = text
        cut = stable_prefix(text)
        if cut > self._frozen:
            self.bodies[-1].show_markdown(text[self._frozen : cut])
            self.bodies[-1].show()
            self.live.follow(self.bodies[-1], final=True)  # screen readers say the answer as it comes
            self._frozen = cut
            self.bodies.append(self._add_body())
        tail = text[self._frozen :]
        self.bodies[-1].setVisible(bool(tail.strip()) or not self._frozen)
        self.bodies[-1].show_markdown(tail or "…")
        self.live.follow(self.bodies[-1])

    def announce_rest(self) -> None:
        """The stream ended: screen readers say the rest of the answer."""
        if self.text[self._frozen :].strip():
            self.live.follow(self.bodies[-1], final=True)

    def html(self) -> str:
        return "".join(b.source_html for b in self.bodies if b.isVisibleTo(self))

    def set_status(self, status: str) -> None:
        self._status = status
        self.title.setText(f"<b>{self._name}</b>{_STATUS_NOTES.get(status, '')}")

    def set_model(self, model: str | None) -> None:
        """Head an answer with the model that wrote it (None: unknown, "Model")."""
        if self.role == "assistant":
            self._name = model or _ROLE_TITLES["assistant"]
            self.setAccessibleName(f"Answer from {model}" if model else "Answer")
        else:
            self.setAccessibleName(f"{self._name} message")
        self.set_status(self._status)

    def set_stats(self, timings: Mapping[str, Any] | None) -> None:
        """An answer's numbers (tokens, tok/s, time to first token), shown on hover."""
        stats = answer_stats(timings)
        self._tip = f"{self._name}\n{stats}" if stats else ""
        for w in (self, self.title, *self.bodies):
            w.setToolTip(self._tip)

    def set_branch(self, branch: Any) -> None:
        """``‹ 2/3 ›`` for a message with other versions (a core Branch; None or one version hides it)."""
        self.branch = branch if branch is not None and branch.count > 1 else None
        b = self.branch
        for w in (self.previous_button, self.version, self.next_button):
            w.setVisible(b is not None)
        if b is not None:
            self.version.setText(b.label())
            self.version.setAccessibleName(f"Version {b.index + 1} of {b.count}")
            self.previous_button.setEnabled(b.previous_id is not None)
            self.next_button.setEnabled(b.next_id is not None)

    def set_busy(self, busy: bool) -> None:
        """While an answer streams the thread cannot change: no Edit, no switching versions."""
        if self.edit_button is not None:
            self.edit_button.setEnabled(not busy and self.message_id is not None)
        b = self.branch
        self.previous_button.setEnabled(not busy and b is not None and b.previous_id is not None)
        self.next_button.setEnabled(not busy and b is not None and b.next_id is not None)

    def _arrow(self, text: str, name: str, step: int) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setAccessibleName(name)
        button.setToolTip(name)
        button.setAutoRaise(True)
        button.clicked.connect(lambda: self._switch(step))
        return button

    def _switch(self, step: int) -> None:
        b = self.branch
        target = None if b is None else (b.previous_id if step < 0 else b.next_id)
        if target is not None:
            self.branch_requested.emit(target)

    def _add_body(self) -> RichText:
        body = RichText(f"{self._name} message text", dark=self.dark)
        body.setToolTip(self._tip)
        self._text_column.addWidget(body)
        return body

    @Slot()
    def copy_text(self) -> None:
        QGuiApplication.clipboard().setText(self.text)

    @Slot()
    def _on_edit(self) -> None:
        self.edit_requested.emit(self.message_id or 0, self.text)


class MessageView(QScrollArea):
    """The conversation. Stays scrolled to the bottom while an answer streams, unless the user
    scrolled up to read."""

    # (message id, text) of a user message to rewrite
    edit_requested = Signal(int, str)
    # message id: show the branch of this version of a message
    branch_requested = Signal(int)

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setAccessibleName("Conversation")
        inner = QWidget()
        self._column = QVBoxLayout(inner)
        self._column.addStretch(1)
        self.setWidget(inner)
        self._streaming: MessageWidget | None = None
        self._buffer: list[str] = []
        self._dirty = False
        self._stick = True
        self._timer = QTimer(self)
        self._timer.setInterval(STREAM_RENDER_MS)
        self._timer.timeout.connect(self._render_stream)
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(lambda v: setattr(self, "_stick", v >= bar.maximum() - 8))
        bar.rangeChanged.connect(lambda _lo, hi: bar.setValue(hi) if self._stick else None)

    # --- whole conversation --------------------------------------------------------------------

    def show_messages(self, messages: Sequence[Any], branches: Mapping[int, Any] | None = None) -> None:
        """Replace the view with ``messages`` (ChatStore Message objects), e.g. a stored thread, and
        each one's versions (``branches``: message id → core Branch)."""
        self.clear()
        for m in messages:
            w = self.add_message(m.role, m.content, message_id=m.id, status=m.status, model=m.model)
            self._describe(w, m, branches)

    def sync(self, messages: Sequence[Any], branches: Mapping[int, Any] | None = None) -> bool:
        """Give the shown messages the stored ones' ids, status, model, numbers and versions,
        without drawing their text again; False when they differ in shape (then call
        :meth:`show_messages`)."""
        widgets = self.messages()
        if [w.role for w in widgets] != [m.role for m in messages]:
            return False
        for w, m in zip(widgets, messages, strict=True):
            w.message_id = m.id
            w.set_status(m.status)
            if w.role == "assistant":
                w.set_model(m.model)
            self._describe(w, m, branches)
            w.set_busy(False)
        return True

    @staticmethod
    def _describe(w: MessageWidget, m: Any, branches: Mapping[int, Any] | None) -> None:
        if w.role == "assistant":
            w.set_stats(m.timings)
        w.set_branch((branches or {}).get(m.id))

    def clear(self) -> None:
        self._end_timer()
        self._streaming = None
        while self._column.count() > 1:
            item = self._column.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self._stick = True

    def messages(self) -> list[MessageWidget]:
        out = []
        for i in range(self._column.count()):
            item = self._column.itemAt(i)
            w = item.widget() if item is not None else None
            if isinstance(w, MessageWidget):
                out.append(w)
        return out

    def add_message(self, role: str, text: str, *, message_id: int | None = None,
                    status: str = "complete", model: str | None = None) -> MessageWidget:  # fmt: skip
        widget = MessageWidget(
            role, text, message_id=message_id, status=status, dark=_is_dark(self), model=model
        )
        widget.edit_requested.connect(self.edit_requested)
        widget.branch_requested.connect(self.branch_requested)
        self._column.insertWidget(self._column.count() - 1, widget)
        return widget

    def drop_from(self, index: int) -> None:
        """Remove message ``index`` and all after it (a regenerated answer, an edited question)."""
        for w in self.messages()[index:]:
            self._column.removeWidget(w)
            w.deleteLater()

    # --- streaming -----------------------------------------------------------------------------

    def begin_answer(self, model: str | None = None) -> MessageWidget:
        """An answer starts streaming, written by ``model`` (its label)."""
        self._buffer = []
        self._stick = True
        self._streaming = self.add_message("assistant", "", model=model)
        self._timer.start()
        return self._streaming

    def append_answer(self, text: str) -> None:
        """Called per engine event (~every 20 ms): buffer only; the timer redraws."""
        self._buffer.append(text)
        self._dirty = True

    def end_answer(self, status: str = "complete") -> None:
        self._dirty = True
        self._render_stream(final=True)
        if self._streaming is not None:
            self._streaming.set_status(status)
            self._streaming.announce_rest()
        self._end_timer()
        self._streaming = None

    def answer_text(self) -> str:
        return "".join(self._buffer)

    def _render_stream(self, final: bool = False) -> None:
        if self._streaming is not None and self._dirty:
            self._dirty = False
            text = "".join(self._buffer)
            # the stored answer is stripped (engine/chat.py): the finished message shows the same
            self._streaming.stream_text(text.strip() if final else text.lstrip())

    def _end_timer(self) -> None:
        self._timer.stop()
        self._dirty = False

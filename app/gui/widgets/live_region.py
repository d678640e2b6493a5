"""Text that arrives piece by piece (a streamed answer), said by screen readers as it comes: what a
polite ARIA live region does on the web.

Qt's AT-SPI bridge has no "live" attribute to set on a widget; what it has is the announcement
(``QAccessibleAnnouncementEvent``, Qt 6.8+), sent as AT-SPI's ``object:announcement`` with a
politeness, which Orca speaks. Saying every token would be noise and would cut itself off, so a
:class:`LiveRegion` says each sentence once it is complete, and the rest when the text is final:
each part once, politely, as the rendered text a sighted user reads (no Markdown marks).
"""

from __future__ import annotations

import re

from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent
from PySide6.QtWidgets import QTextEdit, QWidget

# a sentence ends at . ! ? or … (and any closing quotes or brackets) before a space, or at a line end;
# not at a number's full stop: "2. " is a list item's number, said with the item
_SENTENCE_END = re.compile(r"(?:[!?…]|(?<!\d)\.)[\"'”’)\]]*\s|\n")


def complete_sentences_end(text: str, start: int = 0) -> int:
    """Where the last complete sentence of ``text[start:]`` ends (``start`` when none has)."""
    end = start
    for match in _SENTENCE_END.finditer(text, start):
        end = match.end()
    return end


def announce(widget: QWidget, text: str) -> bool:
    """Ask screen readers to say ``text`` (whitespace collapsed) on behalf of ``widget``, after
    what they are saying now; False when there is nothing to say or no assistive technology
    listens (then nothing is sent)."""
    words = " ".join(text.split())
    if not words or not QAccessible.isActive():
        return False
    event = QAccessibleAnnouncementEvent(widget, words)
    event.setPoliteness(QAccessible.AnnouncementPoliteness.Polite)
    QAccessible.updateAccessibility(event)
    return True


class LiveRegion:
    """Announces, on behalf of ``widget``, the text of a growing text view sentence by sentence.

    Call :meth:`follow` after each redraw of the view; ``final=True`` when its text will not grow
    any more (the rest is said, and the next call starts on a new view's text)."""

    def __init__(self, widget: QWidget) -> None:
        self._widget = widget
        self._said = 0  # characters of the followed view's plain text already announced

    def follow(self, view: QTextEdit, *, final: bool = False) -> None:
        if not QAccessible.isActive():  # nobody listens: not even the plain text is computed
            if final:
                self._said = 0
            return
        text = view.toPlainText()
        end = len(text) if final else complete_sentences_end(text, self._said)
        if end > self._said:
            announce(self._widget, text[self._said : end])
        self._said = 0 if final else end

"""A conversation's title: its first question, unless the user renamed it.

The title of a chat the user did not rename follows the first user message of the thread on
screen: editing that message, or switching to another branch of it, retitles the chat. A title the
user chose is never touched. Whether a title was chosen is read from the title itself (it is not the
automatic title of the first question), so no flag has to be kept in step with it.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.chat.records import Message

NEW_CHAT_TITLE = "New chat"  # a conversation without a question yet
TITLE_MAX_CHARS = 60  # a list row's worth of text; the whole question is in the chat itself


def auto_title(question: str | None) -> str:
    """The title a chat gets from its first question: one line, whitespace collapsed, shortened."""
    words = " ".join((question or "").split())
    if not words:
        return NEW_CHAT_TITLE
    return words if len(words) <= TITLE_MAX_CHARS else words[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def first_question(thread: Sequence[Message]) -> str | None:
    """The text of the thread's first user message, or None before the first question."""
    return next((m.content for m in thread if m.role == "user"), None)


def is_automatic(title: str, question: str | None) -> bool:
    """Whether ``title`` is what :func:`auto_title` made of ``question`` (the user did not rename
    it). Titles of older versions, the question's first 60 characters, count as automatic too."""
    if question is None:
        return title == NEW_CHAT_TITLE
    return title in (auto_title(question), question[:TITLE_MAX_CHARS])


def followed_title(title: str, before: Sequence[Message], after: Sequence[Message]) -> str | None:
    """The new title when the thread on screen changed from ``before`` to ``after``, or None when
    the title stays (the first question is the same, or the user renamed the chat)."""
    old, new = first_question(before), first_question(after)
    if old == new or not is_automatic(title, old):
        return None
    return auto_title(new)

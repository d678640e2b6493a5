"""The Chat panel's stored conversations: the ChatStore of the GUI thread (opened on first use; a
database that had to be recovered is reported once), the list with its search, the branch on
screen, and what the user does to them — open a chat, start a new one, rename, export, delete, and
‹ › on a message for another version. Search, branches and titles are the store's and
:mod:`app.core.chat`'s rules; answers are stored by the engine, through a store of its own thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Slot


class ConversationActions:
    """Mixed into :class:`app.gui.panels.chat.ChatPanel`, whose widgets and state these use."""

    def store(self) -> Any:
        """The GUI thread's own store (sqlite connections belong to the thread that opened them)."""
        if self._store is None:
            from app.core.chat.store import ChatStore

            self._store = ChatStore()
            if self._store.recovery_notice is not None:
                notice = self._store.recovery_notice
                self.ctx.error.emit(str(notice), notice.hint or "")
        return self._store

    def _refresh_list(self) -> None:
        """The conversations, or those the search box's words are found in."""
        query = self.conversations.search.text()
        found = self.store().search_conversations(query)
        self.conversations.show_conversations(found, self.conversation_id)

    def _show_thread(self, *, sync: bool = False) -> None:
        """Show the branch on screen; ``sync``: only adopt its ids, models and numbers if the view
        already shows it."""
        cid = self.conversation_id
        store = self.store()
        thread = store.thread(cid) if cid is not None else []
        branches = store.branches(cid, thread) if cid is not None else {}
        if not (sync and self.view.sync(thread, branches)):
            self.view.show_messages(thread, branches)

    @Slot(int)
    def _on_selected(self, conversation_id: int) -> None:
        if self.state == "answering":
            return
        self.conversation_id = conversation_id
        self._cancel_edit()
        self._show_thread()
        self._offer_own_model()
        self._update_buttons()

    @Slot(int)
    def show_branch(self, message_id: int) -> None:
        """‹ › on a message: show the branch through that version of it (the store keeps it shown)."""
        if self.state == "answering":
            return
        self._cancel_edit()
        self.store().select_branch(message_id)
        self._show_thread()
        self._refresh_list()  # the title follows the first question on screen
        self._update_buttons()

    @Slot(int, str)
    def rename_chat(self, conversation_id: int, title: str) -> None:
        self.store().rename(conversation_id, title)
        self._refresh_list()

    @Slot(int, str, str)
    def export_chat(self, conversation_id: int, fmt: str, path: str) -> bool:
        """Save a chat as Markdown or JSON (``fmt``: "md" | "json") to ``path`` (the list asked
        where); False when it could not be written (the window says why)."""
        from app.core.errors import ChatStoreError

        try:
            self.store().export_to(conversation_id, Path(path), fmt)
        except ChatStoreError as exc:
            self.ctx.error.emit(str(exc), exc.hint or "")
            return False
        self._notify(f"Saved the chat to {path}.")
        return True

    @Slot()
    def new_chat(self) -> None:
        """Ctrl+N: an empty chat; it is stored with its first message."""
        if self.state == "answering":
            return
        self.conversation_id = None
        self._cancel_edit()
        self.offer.show_text("")
        self.conversations.clear_selection()
        self.view.clear()
        self.input.setFocus()
        self._update_buttons()

    @Slot(int)
    def _delete_chat(self, conversation_id: int) -> None:
        self.store().delete_conversation(conversation_id)
        if conversation_id == self.conversation_id:
            self.new_chat()
        self._refresh_list()

    @Slot(int)
    def _on_created(self, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self._refresh_list()

"""Conversations and their branching message trees, kept in one SQLite file.

Messages form a tree through ``parent_id``: regenerating an answer or editing a question adds a
sibling instead of overwriting, so every earlier branch stays readable. Opening, migrating and
recovering the file is :mod:`app.core.chat.database`; the rows are :mod:`app.core.chat.records`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.chat import export, records
from app.core.chat.database import DB_FILENAME, open_database, store_error
from app.core.chat.records import Conversation, Message, Role, Status
from app.core.errors import ChatStoreError

__all__ = ["ChatStore", "Conversation", "Message", "Role", "Status"]  # the records come with the store


class ChatStore:
    """Every conversation, in ``chats.sqlite3`` under the data dir unless ``path`` says otherwise.

    Each write is one transaction. Use one store per thread (sqlite3's rule); several stores,
    in one process or several, may share the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.data_dir() / DB_FILENAME
        # recovered_from: where opening moved a damaged file before starting a fresh one, else None.
        self._conn, self.recovered_from = open_database(self.path)

    @property
    def recovery_notice(self) -> ChatStoreError | None:
        """What to tell the user when opening replaced a damaged file, else None."""
        if self.recovered_from is None:
            return None
        return ChatStoreError(
            "The chat history file was damaged, so a fresh one was started.",
            hint=f"The damaged file was moved aside to {self.recovered_from}; nothing was deleted.",
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ChatStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Conversations

    def create_conversation(
        self, *, title: str, model: str, plan: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> Conversation:
        with self._tx(write=True) as conn:
            return records.insert_conversation(conn, title, model, plan, settings)

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._tx(write=False) as conn:
            return records.get_conversation(conn, conversation_id)

    def list_conversations(self, *, limit: int = 100) -> list[Conversation]:
        """Most recently active first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT * FROM conversations ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [records.conversation_of(row) for row in rows]

    def rename(self, conversation_id: int, title: str) -> Conversation:
        with self._tx(write=True) as conn:
            records.get_conversation(conn, conversation_id)
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            records.touch(conn, conversation_id)
            return records.get_conversation(conn, conversation_id)

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete it and all its messages; one already gone (another window) is not an error."""
        with self._tx(write=True) as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # Messages and branches

    def add_message(
        self,
        conversation_id: int,
        *,
        role: Role,
        content: str,
        status: Status = "complete",
        parent_id: int | None = None,
        timings: Mapping[str, Any] | None = None,
        model: str | None = None,
    ) -> Message:
        """Write a finished (or stopped: ``status="partial"``) message after ``parent_id``."""
        records.check_role_and_status(role, status)
        with self._tx(write=True) as conn:
            records.get_conversation(conn, conversation_id)
            if (
                parent_id is not None
                and records.get_message(conn, parent_id).conversation_id != conversation_id
            ):
                raise ValueError(f"message {parent_id} belongs to another conversation")
            return records.insert_message(
                conn, conversation_id, role, content, status, parent_id, timings, model
            )

    def thread(self, conversation_id: int, *, leaf_id: int | None = None) -> list[Message]:
        """The path from the root to ``leaf_id`` (default: the newest leaf): what the model sees."""
        with self._tx(write=False) as conn:
            return records.thread(conn, conversation_id, leaf_id)

    def siblings(self, message_id: int) -> list[Message]:
        """Every message with the same parent, the given one included, oldest first."""
        with self._tx(write=False) as conn:
            msg = records.get_message(conn, message_id)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (msg.conversation_id, msg.parent_id),
            ).fetchall()
        return [records.message_of(row) for row in rows]

    def branch_for_regenerate(
        self, conversation_id: int, *, leaf_id: int | None = None
    ) -> tuple[list[Message], int | None]:
        """The thread without its last assistant answer, and the parent a new answer should take.

        The new answer becomes a sibling of the old one. A thread ending in a user message (an
        edit, or a failed generation that saved nothing) is returned whole.
        """
        history = self.thread(conversation_id, leaf_id=leaf_id)
        if history and history[-1].role == "assistant":
            history = history[:-1]
        return history, (history[-1].id if history else None)

    def edit_user_message(self, message_id: int, new_content: str) -> Message:
        """Add the edited text as a sibling of ``message_id``; the old branch stays in siblings()."""
        with self._tx(write=True) as conn:
            old = records.get_message(conn, message_id)
            if old.role != "user":
                raise ValueError(f"message {message_id} is a {old.role} message, not a user message")
            return records.insert_message(
                conn, old.conversation_id, "user", new_content, "complete", old.parent_id, None, None
            )

    # Export

    def export_markdown(self, conversation_id: int) -> str:
        """Title, model and plan, then the active thread's turns (:func:`export.to_markdown`)."""
        with self._tx(write=False) as conn:
            conv = records.get_conversation(conn, conversation_id)
            active = records.thread(conn, conversation_id, None)
        return export.to_markdown(conv, active)

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation, its active thread and every message (all branches), JSON-ready."""
        with self._tx(write=False) as conn:
            conv = records.get_conversation(conn, conversation_id)
            active = records.thread(conn, conversation_id, None)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return export.to_json(conv, active, [records.message_of(row) for row in rows])

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, with SQLite's errors turned into ChatStoreError.

        Writes start IMMEDIATE so the busy timeout covers taking the write lock: under WAL a
        deferred transaction that later tries to write fails at once instead of waiting.
        """
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.ProgrammingError:
            raise  # our bug (e.g. a closed store), not the user's file
        except sqlite3.DatabaseError as exc:
            raise store_error(exc, self.path) from exc

"""Conversations and their branching message trees, kept in one SQLite file.

Messages form a tree through ``parent_id``: regenerating an answer or editing a question adds a
sibling instead of overwriting, so every earlier branch stays readable. One branch is on screen
(the conversation's active leaf): a new message continues it, :meth:`ChatStore.select_branch`
switches it, and a chat the user did not rename takes its title from it (:mod:`app.core.chat.titles`).
Opening, migrating and recovering the file is :mod:`app.core.chat.database`; the rows are
:mod:`app.core.chat.records`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.chat import export, records, titles
from app.core.chat.branches import Branch, branches_of
from app.core.chat.database import DB_FILENAME, open_database, store_error
from app.core.chat.records import Conversation, Message, Role, Status
from app.core.errors import ChatStoreError

__all__ = [
    "Branch",
    "ChatStore",
    "Conversation",
    "Message",
    "Role",
    "Status",
]  # the records come with the store

_FOLD = "tailorlm_fold"  # SQL name of str.casefold: SQLite's own lower() folds ASCII only


class ChatStore:
    """Every conversation, in ``chats.sqlite3`` under the data dir unless ``path`` says otherwise.

    Each write is one transaction. Use one store per thread (sqlite3's rule); several stores,
    in one process or several, may share the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.data_dir() / DB_FILENAME
        # recovered_from: where opening moved a damaged file before starting a fresh one, else None.
        self._conn, self.recovered_from = open_database(self.path)
        self._conn.create_function(_FOLD, 1, _casefold, deterministic=True)

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

    def search_conversations(self, query: str, *, limit: int = 100) -> list[Conversation]:
        """Conversations whose title or messages (any branch) hold every word of ``query``,
        ignoring case; most recently active first. An empty query lists them all."""
        words = query.casefold().split()
        if not words:
            return self.list_conversations(limit=limit)
        term = (f"(instr({_FOLD}(c.title), ?) > 0 OR EXISTS (SELECT 1 FROM messages m"
                f" WHERE m.conversation_id = c.id AND instr({_FOLD}(m.content), ?) > 0))")  # fmt: skip
        where = " AND ".join([term] * len(words))
        params = [w for word in words for w in (word, word)]
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT c.* FROM conversations c WHERE {where} ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [records.conversation_of(row) for row in rows]

    def set_model(self, conversation_id: int, *, model: str, plan: Mapping[str, Any]) -> Conversation:
        """Record that ``model`` (a file), with ``plan``, now answers in the conversation."""
        with self._tx(write=True) as conn:
            records.get_conversation(conn, conversation_id)
            conn.execute("UPDATE conversations SET model = ?, plan_json = ? WHERE id = ?",
                         (model, records.dump(plan), conversation_id))  # fmt: skip
            return records.get_conversation(conn, conversation_id)

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
        """Write a finished (or stopped: ``status="partial"``) message after ``parent_id``; its
        branch is the one on screen from now on."""
        records.check_role_and_status(role, status)
        with self._tx(write=True) as conn:
            records.get_conversation(conn, conversation_id)
            if (
                parent_id is not None
                and records.get_message(conn, parent_id).conversation_id != conversation_id
            ):
                raise ValueError(f"message {parent_id} belongs to another conversation")
            before = records.thread(conn, conversation_id, None) if role == "user" else None
            msg = records.insert_message(
                conn, conversation_id, role, content, status, parent_id, timings, model
            )
            if before is not None:
                _follow_title(conn, conversation_id, before)
            return msg

    def thread(self, conversation_id: int, *, leaf_id: int | None = None) -> list[Message]:
        """The path from the root to ``leaf_id`` (default: the branch on screen): what the model sees."""
        with self._tx(write=False) as conn:
            return records.thread(conn, conversation_id, leaf_id)

    def branches(self, conversation_id: int, thread: list[Message]) -> dict[int, Branch]:
        """Each message of ``thread`` (of this conversation) with its siblings: the ``‹ 2/3 ›``."""
        with self._tx(write=False) as conn:
            links = conn.execute(
                "SELECT id, parent_id FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return branches_of(thread, ((row[0], row[1]) for row in links))

    def select_branch(self, message_id: int) -> list[Message]:
        """Show ``message_id``'s branch: the thread through it, on to the newest message below it.
        New messages continue it; a chat the user did not rename takes its first question as title."""
        with self._tx(write=True) as conn:
            msg = records.get_message(conn, message_id)
            before = records.thread(conn, msg.conversation_id, None)
            leaf = records.newest_below(conn, message_id)
            conn.execute(
                "UPDATE conversations SET active_leaf_id = ? WHERE id = ?", (leaf, msg.conversation_id)
            )
            _follow_title(conn, msg.conversation_id, before)
            return records.thread(conn, msg.conversation_id, leaf)

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
        """Add the edited text as a sibling of ``message_id``; the old branch stays in siblings().
        Editing the first question retitles a chat the user did not rename."""
        with self._tx(write=True) as conn:
            old = records.get_message(conn, message_id)
            if old.role != "user":
                raise ValueError(f"message {message_id} is a {old.role} message, not a user message")
            before = records.thread(conn, old.conversation_id, None)
            msg = records.insert_message(
                conn, old.conversation_id, "user", new_content, "complete", old.parent_id, None, None
            )
            _follow_title(conn, old.conversation_id, before)
            return msg

    # Export

    def export_markdown(self, conversation_id: int) -> str:
        """Title, model and plan, then the branch on screen (:func:`export.to_markdown`)."""
        with self._tx(write=False) as conn:
            conv = records.get_conversation(conn, conversation_id)
            active = records.thread(conn, conversation_id, None)
        return export.to_markdown(conv, active)

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation, the branch on screen and every message (all branches), JSON-ready."""
        with self._tx(write=False) as conn:
            conv = records.get_conversation(conn, conversation_id)
            active = records.thread(conn, conversation_id, None)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return export.to_json(conv, active, [records.message_of(row) for row in rows])

    def export_to(self, conversation_id: int, path: Path, fmt: str) -> None:
        """Write the conversation to ``path`` as Markdown (``fmt="md"``) or JSON (``"json"``)."""
        if fmt not in export.FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; one of {tuple(export.FORMATS)}")
        if fmt == "md":
            text = self.export_markdown(conversation_id)
        else:
            text = json.dumps(self.export_json(conversation_id), indent=2, ensure_ascii=False) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ChatStoreError(
                f"The chat could not be saved to {path} ({exc.strerror or exc}).",
                hint="Choose another folder, or check that the disk is not full.",
            ) from exc

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


def _casefold(text: object) -> str | None:
    return text.casefold() if isinstance(text, str) else None


def _follow_title(conn: sqlite3.Connection, conversation_id: int, before: list[Message]) -> None:
    """Retitle after the thread on screen changed from ``before`` (see :mod:`app.core.chat.titles`)."""
    conv = records.get_conversation(conn, conversation_id)
    title = titles.followed_title(conv.title, before, records.thread(conn, conversation_id, None))
    if title is not None:
        conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))

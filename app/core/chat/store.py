"""Conversations and their branching message trees, kept in one SQLite file.

Messages form a tree through ``parent_id``: regenerating an answer or editing a question adds a
sibling instead of overwriting, so every earlier branch stays readable. The GUI and the CLI may
hold the same file open at once (WAL, a busy timeout); a damaged file is moved aside, never deleted.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from app.core import paths
from app.core.errors import TailorError
from app.core.units import format_bytes

DB_FILENAME = "chats.sqlite3"
SCHEMA_VERSION = 1  # stored as PRAGMA user_version
BUSY_TIMEOUT_MS = 5000  # a chat write takes milliseconds; five seconds only passes if a writer hangs

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "partial", "error"]

# Step n turns a version n-1 file into version n. A later version appends a step (usually
# ``ALTER TABLE ... ADD COLUMN``) and never edits an old one: files in the field were made by it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            model TEXT NOT NULL,
            plan_json TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        # AUTOINCREMENT: a window still holding the id of a deleted message must never reach a new one.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('complete', 'partial', 'error')),
            timings_json TEXT,
            model TEXT,
            created_at REAL NOT NULL)""",
        "CREATE INDEX messages_by_conversation ON messages (conversation_id, id)",
        "CREATE INDEX messages_by_parent ON messages (parent_id)",
    ),
}
_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (sqlite3.h)
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (sqlite3.h)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")  # CommonMark code fence opener


class ChatStoreError(TailorError):
    """The chat history file could not be opened, read or written."""


class ChatNotFoundError(ChatStoreError):
    """A conversation or message id that is not (or no longer) in the store."""


@dataclass(frozen=True)
class Conversation:
    """One chat. ``plan`` holds the run settings, ``settings`` the system prompt and sampling."""

    id: int
    title: str
    model: str  # a GGUF path, a Hugging Face repo or a catalog id
    plan: dict[str, Any] = field(hash=False)  # n_ctx, n_gpu_layers, type_k, quant, predicted *_bytes …
    settings: dict[str, Any] = field(hash=False)  # system_prompt, temperature, top_p, seed, stop …
    created_at: float  # time.time() seconds
    updated_at: float  # bumped by every change, including a new message


@dataclass(frozen=True)
class Message:
    """One turn. ``parent_id`` is the message it follows; siblings are alternative branches."""

    id: int
    conversation_id: int
    role: Role
    content: str
    created_at: float  # time.time() seconds
    status: Status  # "partial": generation was stopped; "error": the engine failed mid-answer
    parent_id: int | None
    timings: dict[str, Any] | None = field(hash=False)  # ttft_ms, gen_tok_s, peak_rss_bytes … as measured
    model: str | None  # the model that wrote this answer: a chat may switch models


class ChatStore:
    """Every conversation, in ``chats.sqlite3`` under the data dir unless ``path`` says otherwise.

    Each write is one transaction. Use one store per thread (sqlite3's rule); several stores,
    in one process or several, may share the file.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else paths.data_dir() / DB_FILENAME
        self.recovered_from: Path | None = None  # where a damaged file was moved on opening
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = _connect(self.path)
        except _Damaged:
            # Keep the damaged file for the user (or a recovery tool) and start over beside it.
            self.recovered_from = _move_aside(self.path)
            try:
                self._conn = _connect(self.path)
            except _Damaged as exc:
                raise _damaged_error(self.path) from exc

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
        now = time.time()
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "INSERT INTO conversations (title, model, plan_json, settings_json, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (title, model, _dump(plan), _dump(settings), now, now),
            )
            return _get_conversation(conn, _rowid(cur))

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._tx(write=False) as conn:
            return _get_conversation(conn, conversation_id)

    def list_conversations(self, *, limit: int = 100) -> list[Conversation]:
        """Most recently active first."""
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT * FROM conversations ORDER BY updated_at DESC, id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_conversation(row) for row in rows]

    def rename(self, conversation_id: int, title: str) -> Conversation:
        return self._set_column(conversation_id, "title", title)

    def update_settings(self, conversation_id: int, settings: Mapping[str, Any]) -> Conversation:
        return self._set_column(conversation_id, "settings_json", _dump(settings))

    def update_plan(self, conversation_id: int, plan: Mapping[str, Any]) -> Conversation:
        return self._set_column(conversation_id, "plan_json", _dump(plan))

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete it and all its messages; one already gone (another window) is not an error."""
        with self._tx(write=True) as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # Messages

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
        if role not in get_args(Role):
            raise ValueError(f"unknown role {role!r}")
        _check_status(status)
        with self._tx(write=True) as conn:
            _get_conversation(conn, conversation_id)
            if parent_id is not None and _get_message(conn, parent_id).conversation_id != conversation_id:
                raise ValueError(f"message {parent_id} belongs to another conversation")
            return _insert_message(conn, conversation_id, role, content, status, parent_id, timings, model)

    def update_message(
        self,
        message_id: int,
        *,
        content: str | None = None,
        status: Status | None = None,
        timings: Mapping[str, Any] | None = None,
    ) -> Message:
        """Change the given fields only (e.g. a stopped answer that was continued)."""
        if status is not None:
            _check_status(status)
        with self._tx(write=True) as conn:
            old = _get_message(conn, message_id)
            conn.execute(
                "UPDATE messages SET content = ?, status = ?, timings_json = ? WHERE id = ?",
                (
                    old.content if content is None else content,
                    old.status if status is None else status,
                    _dump_optional(old.timings if timings is None else timings),
                    message_id,
                ),
            )
            _touch(conn, old.conversation_id)
            return _get_message(conn, message_id)

    def thread(self, conversation_id: int, *, leaf_id: int | None = None) -> list[Message]:
        """The path from the root to ``leaf_id`` (default: the newest leaf): what the model sees."""
        with self._tx(write=False) as conn:
            return _thread(conn, conversation_id, leaf_id)

    def latest_leaf(self, message_id: int) -> Message:
        """The newest message at or below ``message_id``: where to go when switching to a sibling."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                """WITH RECURSIVE below (id) AS (
                       SELECT ? UNION ALL SELECT m.id FROM messages m JOIN below ON m.parent_id = below.id)
                   SELECT MAX(id) FROM below""",
                (message_id,),
            ).fetchone()
            return _get_message(conn, row[0])  # below always holds message_id: a missing one raises here

    def siblings(self, message_id: int) -> list[Message]:
        """Every message with the same parent, the given one included, oldest first."""
        with self._tx(write=False) as conn:
            msg = _get_message(conn, message_id)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
                (msg.conversation_id, msg.parent_id),
            ).fetchall()
        return [_message(row) for row in rows]

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
            old = _get_message(conn, message_id)
            if old.role != "user":
                raise ValueError(f"message {message_id} is a {old.role} message, not a user message")
            return _insert_message(
                conn, old.conversation_id, "user", new_content, "complete", old.parent_id, None, None
            )

    # Export

    def export_markdown(self, conversation_id: int) -> str:
        """Title, model and plan, then the active thread's turns; code blocks are kept verbatim."""
        with self._tx(write=False) as conn:
            conv = _get_conversation(conn, conversation_id)
            thread = _thread(conn, conversation_id, None)
        lines = [f"# {conv.title}", "", f"- Model: `{conv.model}`"]
        summary = _plan_summary(conv.plan)
        if summary:
            lines.append(f"- Plan: {summary}")
        for msg in thread:
            body = msg.content.rstrip("\n")
            fence = _unclosed_fence(body)
            if fence:
                # An answer stopped inside a code block would otherwise swallow the rest of the file.
                body += "\n" + fence
            lines += ["", f"**{msg.role.capitalize()}**", "", body]
            if msg.status != "complete":
                lines += ["", "*(stopped)*" if msg.status == "partial" else "*(failed)*"]
        return "\n".join(lines) + "\n"

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation, its active thread and every message (all branches), JSON-ready."""
        with self._tx(write=False) as conn:
            conv = _get_conversation(conn, conversation_id)
            thread = _thread(conn, conversation_id, None)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
            ).fetchall()
        return {
            "format": "tailorlm-chat",
            "schema_version": SCHEMA_VERSION,
            "conversation": asdict(conv),
            "thread": [asdict(msg) for msg in thread],
            "messages": [asdict(_message(row)) for row in rows],
        }

    # Plumbing

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
            raise _store_error(exc, self.path) from exc

    def _set_column(self, conversation_id: int, column: str, value: str) -> Conversation:
        with self._tx(write=True) as conn:
            _get_conversation(conn, conversation_id)
            # The column name comes from this module only, never from the caller.
            conn.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
            _touch(conn, conversation_id)
            return _get_conversation(conn, conversation_id)


class _Damaged(Exception):
    """The file is not a sound SQLite database."""


def _connect(path: Path) -> sqlite3.Connection:
    """Open, check, configure and migrate; raises _Damaged when the file is not a sound database."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every transaction is visible here.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")  # per connection; needed for ON DELETE CASCADE
        # Check before anything writes: switching a damaged file to WAL could damage it further.
        problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise _Damaged(problem)
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL is safe under WAL (sqlite.org/pragma.html#pragma_synchronous): a power cut may lose
        # the last message, never corrupt the file; FULL would fsync on every message.
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()  # before the file is renamed: Windows cannot move an open file
        if _is_corruption(exc):
            raise _Damaged(str(exc)) from exc
        raise ChatStoreError(
            f"The chat history could not be opened ({exc}).",
            hint=f"Check that {path} can be read and written.",
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return  # the usual case: no write lock taken on opening
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the lock: another store may have migrated the file meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ChatStoreError(
                "The chat history was written by a newer version of TailorLM.",
                hint=f"Update TailorLM to open it; the file is at {path}.",
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # PRAGMA takes no ? parameters
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _move_aside(path: Path) -> Path:
    """Rename a damaged file (and its WAL companions) to ``<name>.corrupt-<timestamp>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        path.rename(target)
        # A stale WAL would otherwise be replayed into the fresh file; keep it paired with its file.
        for suffix in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.rename(target.with_name(target.name + suffix))
    except OSError as exc:
        raise ChatStoreError(
            "The chat history file is damaged and could not be moved aside.",
            hint=f"It is at {path}; move it elsewhere by hand and start TailorLM again.",
        ) from exc
    return target


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return None if code is None else int(code) & 0xFF  # primary code of an extended one


def _is_corruption(exc: sqlite3.Error) -> bool:
    # Python 3.10 has no error codes on exceptions; SQLite's own messages are stable.
    text = str(exc)
    return _code(exc) in _CORRUPTION_CODES or "malformed" in text or "not a database" in text


def _damaged_error(path: Path) -> ChatStoreError:
    return ChatStoreError(
        "The chat history file is damaged.",
        hint=f"It is at {path}; TailorLM moves it aside and starts a fresh one the next time it opens.",
    )


def _store_error(exc: sqlite3.DatabaseError, path: Path) -> ChatStoreError:
    text = str(exc)
    if _is_corruption(exc):
        return _damaged_error(path)
    if _code(exc) in _BUSY_CODES or "locked" in text:
        return ChatStoreError(
            "The chat history is busy in another TailorLM window.",
            hint="Try again in a moment, or close the other window.",
        )
    return ChatStoreError(
        f"The chat history could not be read or written ({text}).",
        hint=f"It is at {path}; check that the disk is not full and the file is writable.",
    )


def _check_status(status: str) -> None:
    if status not in get_args(Status):
        raise ValueError(f"unknown message status {status!r}")


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False)


def _dump_optional(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else _dump(value)


def _rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None  # always set after a one-row INSERT
    return cur.lastrowid


def _touch(conn: sqlite3.Connection, conversation_id: int) -> None:
    conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation_id))


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        model=row["model"],
        plan=json.loads(row["plan_json"]),
        settings=json.loads(row["settings_json"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: sqlite3.Row) -> Message:
    timings = row["timings_json"]
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        created_at=row["created_at"],
        status=row["status"],
        parent_id=row["parent_id"],
        timings=None if timings is None else json.loads(timings),
        model=row["model"],
    )


def _get_conversation(conn: sqlite3.Connection, conversation_id: int) -> Conversation:
    row = conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None:
        raise ChatNotFoundError(
            "That conversation no longer exists.", hint="It may have been deleted in another window."
        )
    return _conversation(row)


def _get_message(conn: sqlite3.Connection, message_id: int) -> Message:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise ChatNotFoundError(
            "That message no longer exists.", hint="Its conversation may have been deleted in another window."
        )
    return _message(row)


def _insert_message(
    conn: sqlite3.Connection,
    conversation_id: int,
    role: Role,
    content: str,
    status: Status,
    parent_id: int | None,
    timings: Mapping[str, Any] | None,
    model: str | None,
) -> Message:
    cur = conn.execute(
        "INSERT INTO messages (conversation_id, parent_id, role, content, status, timings_json, model,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation_id, parent_id, role, content, status, _dump_optional(timings), model, time.time()),
    )
    _touch(conn, conversation_id)
    return _get_message(conn, _rowid(cur))


def _thread(conn: sqlite3.Connection, conversation_id: int, leaf_id: int | None) -> list[Message]:
    _get_conversation(conn, conversation_id)
    if leaf_id is None:
        # Ids only grow and a parent always exists before its child, so the newest message is a leaf.
        row = conn.execute("SELECT MAX(id) FROM messages WHERE conversation_id = ?", (conversation_id,))
        leaf_id = row.fetchone()[0]
        if leaf_id is None:
            return []
    elif _get_message(conn, leaf_id).conversation_id != conversation_id:
        raise ValueError(f"message {leaf_id} belongs to another conversation")
    rows = conn.execute(
        """WITH RECURSIVE path (id, depth) AS (
               SELECT ?, 0
               UNION ALL
               SELECT m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.id
               WHERE m.parent_id IS NOT NULL)
           SELECT m.* FROM path JOIN messages m ON m.id = path.id ORDER BY path.depth DESC""",
        (leaf_id,),
    ).fetchall()
    return [_message(row) for row in rows]


def _plan_summary(plan: Mapping[str, Any]) -> str:
    """``n_ctx 4096, quant Q4_K_M, vram_bytes 1.50 GiB``: the plan's scalar entries, sizes readable."""
    parts = []
    for key, value in plan.items():
        if isinstance(value, (dict, list)) or value is None:
            continue
        if key.endswith("_bytes") and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = format_bytes(value)
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _unclosed_fence(text: str) -> str | None:
    """The fence that would close a code block left open at the end of ``text``, if any."""
    open_fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if not match:
            continue
        run = match.group(1)
        if open_fence is None:
            open_fence = run
        elif run[0] == open_fence[0] and len(run) >= len(open_fence) and line.strip() == run:
            open_fence = None
    return open_fence

"""The chat history's SQLite file: its schema and migrations, opening it with checks, moving a
damaged one aside, and SQLite's errors as sentences for the user.

The GUI and the CLI may hold the same file open at once (WAL, a busy timeout); a damaged file is
moved aside, never deleted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.errors import ChatStoreError
from app.core.files import move_aside

DB_FILENAME = "chats.sqlite3"
SCHEMA_VERSION = 2  # stored as PRAGMA user_version
BUSY_TIMEOUT_MS = 5000  # a chat write takes milliseconds; five seconds only passes if a writer hangs

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
    # The branch on screen: regenerate, edit and a new message continue from it, and it is what
    # opens again. NULL (a version 1 file): the newest message's branch, as version 1 showed.
    2: ("ALTER TABLE conversations ADD COLUMN active_leaf_id INTEGER",),
}
_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (sqlite3.h)
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (sqlite3.h)


class _Damaged(Exception):
    """The file is not a sound SQLite database."""


def open_database(path: Path) -> tuple[sqlite3.Connection, Path | None]:
    """A checked, migrated connection, and where a damaged file was moved first (else None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():  # a folder (or a device) where the file belongs
        raise ChatStoreError(f"The chat history cannot be opened: {path} is not a file.",
                             hint="Move it out of the way (TailorLM will not delete it), then try again.")  # fmt: skip
    try:
        return _connect(path), None
    except sqlite3.OperationalError as exc:  # cannot open at all: permissions, a vanished folder, …
        raise store_error(exc, path) from None
    except _Damaged:
        # Keep the damaged file for the user (or a recovery tool) and start over beside it.
        moved = _move_aside(path)
        try:
            return _connect(path), moved
        except _Damaged as exc:
            raise _damaged_error(path) from exc


def store_error(exc: sqlite3.DatabaseError, path: Path) -> ChatStoreError:
    """What to tell the user about an SQLite error on the open file."""
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
    try:
        return move_aside(path)
    except OSError as exc:
        raise ChatStoreError(
            "The chat history file is damaged and could not be moved aside.",
            hint=f"It is at {path}; move it elsewhere by hand and start TailorLM again.",
        ) from exc


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

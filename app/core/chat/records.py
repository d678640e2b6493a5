"""Conversations and messages as frozen records, and the SQL that reads or writes them on an open
connection inside the caller's transaction.

Messages form a tree through ``parent_id``; a thread is the path from a root to one leaf.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from app.core.errors import ChatNotFoundError

Role = Literal["system", "user", "assistant"]
Status = Literal["complete", "partial", "error"]


@dataclass(frozen=True)
class Conversation:
    """One chat. ``plan`` holds the run settings, ``settings`` the system prompt and sampling."""

    id: int
    title: str
    model: str  # the GGUF file the chat was loaded from
    plan: dict[str, Any] = field(hash=False)  # n_ctx, n_gpu_layers, type_k, quant, predicted *_bytes …
    settings: dict[str, Any] = field(hash=False)  # system_prompt, sampling …
    created_at: float  # time.time() seconds
    updated_at: float  # bumped by every change, including a new message
    active_leaf_id: int | None = None  # the last message of the branch on screen (None: the newest)


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


def check_role_and_status(role: str, status: str) -> None:
    """ValueError for a role or status the schema's CHECK constraints would refuse."""
    if role not in get_args(Role):
        raise ValueError(f"unknown role {role!r}")
    if status not in get_args(Status):
        raise ValueError(f"unknown message status {status!r}")


def dump(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False)


def touch(conn: sqlite3.Connection, conversation_id: int) -> None:
    conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (time.time(), conversation_id))


def _object(text: object) -> dict[str, Any]:
    """A JSON object column; one damaged or edited by hand reads as empty, never as a crash (the
    conversation itself, its title and messages, stays readable)."""
    try:
        value = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def conversation_of(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=str(row["title"]),
        model=str(row["model"]),
        plan=_object(row["plan_json"]),
        settings=_object(row["settings_json"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        active_leaf_id=row["active_leaf_id"],
    )


def message_of(row: sqlite3.Row) -> Message:
    timings = row["timings_json"]
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        created_at=row["created_at"],
        status=row["status"],
        parent_id=row["parent_id"],
        timings=None if timings is None else _object(timings),
        model=row["model"],
    )


def insert_conversation(
    conn: sqlite3.Connection, title: str, model: str, plan: Mapping[str, Any], settings: Mapping[str, Any]
) -> Conversation:
    now = time.time()
    cur = conn.execute(
        "INSERT INTO conversations (title, model, plan_json, settings_json, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (title, model, dump(plan), dump(settings), now, now),
    )
    return get_conversation(conn, _rowid(cur))


def get_conversation(conn: sqlite3.Connection, conversation_id: int) -> Conversation:
    row = conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
    if row is None:
        raise ChatNotFoundError(
            "That conversation no longer exists.", hint="It may have been deleted in another window."
        )
    return conversation_of(row)


def get_message(conn: sqlite3.Connection, message_id: int) -> Message:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        raise ChatNotFoundError(
            "That message no longer exists.", hint="Its conversation may have been deleted in another window."
        )
    return message_of(row)


def insert_message(
    conn: sqlite3.Connection,
    conversation_id: int,
    role: Role,
    content: str,
    status: Status,
    parent_id: int | None,
    timings: Mapping[str, Any] | None,
    model: str | None,
) -> Message:
    timings_json = None if timings is None else dump(timings)
    cur = conn.execute(
        "INSERT INTO messages (conversation_id, parent_id, role, content, status, timings_json, model,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation_id, parent_id, role, content, status, timings_json, model, time.time()),
    )
    mid = _rowid(cur)
    # A new message ends the branch it joins: that branch is the one on screen from now on.
    conn.execute("UPDATE conversations SET active_leaf_id = ?, updated_at = ? WHERE id = ?",
                 (mid, time.time(), conversation_id))  # fmt: skip
    return get_message(conn, mid)


def active_leaf(conn: sqlite3.Connection, conversation_id: int) -> int | None:
    """The last message of the branch on screen: the stored one while it is a message of this
    conversation, else the newest message (None: no messages)."""
    row = conn.execute(
        "SELECT m.id FROM conversations c JOIN messages m ON m.id = c.active_leaf_id"
        " AND m.conversation_id = c.id WHERE c.id = ?",
        (conversation_id,),
    ).fetchone()
    if row is not None:
        return int(row[0])
    # Ids only grow and a parent always exists before its child, so the newest message is a leaf.
    newest = conn.execute("SELECT MAX(id) FROM messages WHERE conversation_id = ?", (conversation_id,))
    value = newest.fetchone()[0]
    return None if value is None else int(value)


def newest_below(conn: sqlite3.Connection, message_id: int) -> int:
    """The newest message in ``message_id``'s subtree (itself included): the leaf its branch ends in."""
    row = conn.execute(
        """WITH RECURSIVE below (id) AS (
               SELECT ?
               UNION ALL
               SELECT m.id FROM messages m JOIN below ON m.parent_id = below.id)
           SELECT MAX(id) FROM below""",
        (message_id,),
    ).fetchone()
    return int(row[0])


def thread(conn: sqlite3.Connection, conversation_id: int, leaf_id: int | None) -> list[Message]:
    """The path from the root to ``leaf_id`` (None: the branch on screen), oldest first."""
    get_conversation(conn, conversation_id)
    if leaf_id is None:
        leaf_id = active_leaf(conn, conversation_id)
        if leaf_id is None:
            return []
    elif get_message(conn, leaf_id).conversation_id != conversation_id:
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
    return [message_of(row) for row in rows]


def _rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None  # always set after a one-row INSERT
    return cur.lastrowid

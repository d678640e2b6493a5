"""The chat file itself: WAL and a schema version, damaged files moved aside (never deleted), newer files refused."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.core.chat.database import SCHEMA_VERSION
from app.core.chat.store import ChatStore
from app.core.errors import ChatStoreError
from tests.core.chat.samples import new_conversation, sql


def test_file_is_in_wal_mode_with_a_schema_version(store: ChatStore, db: Path) -> None:
    assert sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert sql(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_random_bytes_file_is_moved_aside_and_a_fresh_store_works(db: Path) -> None:
    junk = random.Random(0).randbytes(8192)
    db.write_bytes(junk)
    with ChatStore(db) as store:
        moved = store.recovered_from
        assert moved is not None and moved.name.startswith("chats.sqlite3.corrupt-")
        assert moved.read_bytes() == junk  # nothing lost
        notice = store.recovery_notice
        assert isinstance(notice, ChatStoreError) and "damaged" in str(notice)
        assert notice.hint is not None and str(moved) in notice.hint and "moved aside" in notice.hint
        conv = new_conversation(store)
        store.add_message(conv.id, role="user", content="fresh start")
    with ChatStore(db) as store:
        assert store.recovered_from is None
        assert [m.content for m in store.thread(conv.id)] == ["fresh start"]


def test_a_file_with_damaged_pages_is_moved_aside(db: Path) -> None:
    with ChatStore(db) as store:
        conv = new_conversation(store)
        for i in range(50):
            store.add_message(conv.id, role="user", content=f"message {i} " * 40)
    data = bytearray(db.read_bytes())
    page = 4096  # SQLite's default page size; page 1 (the schema) stays, the tables' pages do not
    data[page:] = random.Random(1).randbytes(len(data) - page)
    db.write_bytes(bytes(data))
    with ChatStore(db) as store:
        assert store.recovered_from is not None and store.recovered_from.read_bytes() == bytes(data)
        assert store.list_conversations() == []


def test_a_file_from_a_newer_version_is_refused_not_moved(db: Path) -> None:
    ChatStore(db).close()
    sql(db, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ChatStoreError, match="newer version") as info:
        ChatStore(db)
    assert info.value.hint is not None and str(db) in info.value.hint
    assert db.is_file() and not list(db.parent.glob("*.corrupt-*"))

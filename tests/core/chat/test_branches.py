"""Branches on screen: ‹ 2/3 › for each message, switching to another version of a message, new
messages continuing the branch on screen, and the title following the first question."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.chat.database import _MIGRATIONS
from app.core.chat.store import ChatStore
from app.core.chat.titles import NEW_CHAT_TITLE, auto_title
from tests.core.chat.samples import new_conversation, sql


def _chat(store: ChatStore) -> int:
    conv = store.create_conversation(title=NEW_CHAT_TITLE, model="m.gguf", plan={}, settings={})
    return conv.id


def test_each_message_knows_its_versions_and_switching_shows_that_branch(store: ChatStore) -> None:
    cid = _chat(store)
    q1 = store.add_message(cid, role="user", content="What is the capital of France?")
    a1 = store.add_message(cid, role="assistant", content="Paris.", parent_id=q1.id)
    q2 = store.add_message(cid, role="user", content="And of Italy?", parent_id=a1.id)
    a2 = store.add_message(cid, role="assistant", content="Rome.", parent_id=q2.id)
    a1b = store.add_message(cid, role="assistant", content="It is Paris.", parent_id=q1.id)  # regenerated
    edited = store.edit_user_message(q1.id, "What is the capital of Germany?")
    a3 = store.add_message(cid, role="assistant", content="Berlin.", parent_id=edited.id)

    shown = store.thread(cid)
    assert shown == [edited, a3]
    branches = store.branches(cid, shown)
    assert branches[edited.id].label() == "2/2" and branches[edited.id].previous_id == q1.id
    assert branches[edited.id].next_id is None and branches[a3.id].count == 1

    # ‹ on the question: the first question's branch, down to its newest message (the regenerated answer)
    back = store.select_branch(q1.id)
    assert back == [q1, a1b] == store.thread(cid)
    b = store.branches(cid, back)
    assert (b[q1.id].label(), b[a1b.id].label(), b[a1b.id].previous_id) == ("1/2", "2/2", a1.id)
    assert store.select_branch(a1.id) == [q1, a1, q2, a2]  # the older answer, with the turns after it
    # a new message continues the branch on screen, not the newest one
    q3 = store.add_message(cid, role="user", content="And of Spain?", parent_id=a2.id)
    assert store.thread(cid) == [q1, a1, q2, a2, q3]
    with ChatStore(store.path) as other:  # the branch on screen is kept in the file
        assert other.thread(cid)[-1] == q3 and other.get_conversation(cid).active_leaf_id == q3.id


def test_the_title_follows_the_first_question_unless_the_user_renamed_it(store: ChatStore) -> None:
    cid = _chat(store)
    assert store.get_conversation(cid).title == NEW_CHAT_TITLE
    q1 = store.add_message(cid, role="user", content="What is the capital of France?")
    assert store.get_conversation(cid).title == "What is the capital of France?"
    store.add_message(cid, role="assistant", content="Paris.", parent_id=q1.id)
    edited = store.edit_user_message(q1.id, "What is the capital of Germany?")
    assert store.get_conversation(cid).title == "What is the capital of Germany?"
    store.select_branch(q1.id)  # back to the first version: its question is the title again
    assert store.get_conversation(cid).title == "What is the capital of France?"
    store.rename(cid, "Capitals")
    store.select_branch(edited.id)
    store.edit_user_message(edited.id, "What is the capital of Spain?")
    assert store.get_conversation(cid).title == "Capitals"  # the user's own title stays


def test_later_questions_and_other_titles_do_not_retitle(store: ChatStore) -> None:
    conv = new_conversation(store, "Chosen by a caller")
    q = store.add_message(conv.id, role="user", content="Hi")
    assert store.get_conversation(conv.id).title == "Chosen by a caller"
    cid = _chat(store)
    q = store.add_message(cid, role="user", content="First\n\nquestion   with  spaces " + "x" * 80)
    title = store.get_conversation(cid).title
    assert title == auto_title(q.content) and "\n" not in title and len(title) == 60 and title.endswith("…")
    a = store.add_message(cid, role="assistant", content="ok", parent_id=q.id)
    q2 = store.add_message(cid, role="user", content="Second", parent_id=a.id)
    store.edit_user_message(q2.id, "Second, edited")
    assert store.get_conversation(cid).title == title


def test_a_version_1_file_is_migrated_and_shows_its_newest_branch(db: Path) -> None:
    conn = sqlite3.connect(db)
    for statement in _MIGRATIONS[1]:
        conn.execute(statement)
    conn.execute("INSERT INTO conversations VALUES (1, 'Old', 'm.gguf', '{}', '{}', 1.0, 1.0)")
    conn.execute("INSERT INTO messages VALUES (1, 1, NULL, 'user', 'Hi', 'complete', NULL, NULL, 1.0)")
    conn.execute("INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'Hello', 'complete', NULL, 'm', 1.0)")
    conn.execute("INSERT INTO messages VALUES (3, 1, 1, 'assistant', 'Hey', 'complete', NULL, 'm', 2.0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with ChatStore(db) as store:
        assert [m.content for m in store.thread(1)] == ["Hi", "Hey"]  # as version 1 showed it
        assert store.get_conversation(1).active_leaf_id is None
        assert [m.content for m in store.select_branch(2)] == ["Hi", "Hello"]
    assert sql(db, "SELECT active_leaf_id FROM conversations") == [(2,)]

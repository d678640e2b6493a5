"""The chat store on real SQLite files: restarts, branches and edits, two stores on one file."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import paths
from app.core.chat.database import DB_FILENAME
from app.core.chat.store import ChatStore, Message, Role
from app.core.errors import ChatNotFoundError
from tests.core.chat.samples import PLAN, SETTINGS, TIMINGS, new_conversation, sql


def test_history_survives_a_restart(db: Path) -> None:
    with ChatStore(db) as store:
        conv = new_conversation(store)
        user = store.add_message(conv.id, role="user", content="Hi")
        store.add_message(conv.id, role="assistant", content="Hello!", parent_id=user.id, timings=TIMINGS)
        before = store.thread(conv.id)
    with ChatStore(db) as store:
        assert store.list_conversations() == [store.get_conversation(conv.id)]
        assert store.get_conversation(conv.id).plan == PLAN
        assert store.get_conversation(conv.id).settings == SETTINGS
        assert store.thread(conv.id) == before
        assert [m.content for m in before] == ["Hi", "Hello!"] and before[1].timings == TIMINGS


def test_default_path_is_in_the_data_dir() -> None:
    with ChatStore() as store:
        assert store.path == paths.data_dir() / "chats.sqlite3"
        assert store.path.is_file() and store.recovered_from is None and store.recovery_notice is None


def test_conversations_are_listed_most_recent_first_and_can_be_changed(store: ChatStore) -> None:
    first, second = new_conversation(store, "first"), new_conversation(store, "second")
    assert [c.title for c in store.list_conversations()] == ["second", "first"]
    renamed = store.rename(first.id, "renamed")
    assert renamed.title == "renamed" and renamed.updated_at >= first.updated_at
    assert [c.id for c in store.list_conversations()] == [first.id, second.id]
    assert [c.id for c in store.list_conversations(limit=1)] == [first.id]
    with pytest.raises(ChatNotFoundError):
        store.rename(12345, "nope")


def test_delete_cascades_to_messages(store: ChatStore, db: Path) -> None:
    keep, gone = new_conversation(store, "keep"), new_conversation(store, "gone")
    store.add_message(keep.id, role="user", content="stays")
    parent = store.add_message(gone.id, role="user", content="q")
    store.add_message(gone.id, role="assistant", content="a", parent_id=parent.id)
    store.delete_conversation(gone.id)
    store.delete_conversation(gone.id)  # already gone: not an error
    assert sql(db, "SELECT content FROM messages") == [("stays",)]
    with pytest.raises(ChatNotFoundError):
        store.get_conversation(gone.id)
    with pytest.raises(ChatNotFoundError):
        store.add_message(gone.id, role="user", content="late")


def test_regenerate_adds_a_sibling_and_keeps_the_old_answer(store: ChatStore) -> None:
    conv = new_conversation(store)
    system = store.add_message(conv.id, role="system", content="Be brief.")
    user = store.add_message(conv.id, role="user", content="Name a colour", parent_id=system.id)
    old = store.add_message(conv.id, role="assistant", content="Red", parent_id=user.id)

    history, parent_id = store.branch_for_regenerate(conv.id)
    assert history == [system, user] and parent_id == user.id
    new = store.add_message(conv.id, role="assistant", content="Blue", parent_id=parent_id)

    assert store.thread(conv.id) == [system, user, new]
    assert store.siblings(new.id) == [old, new] == store.siblings(old.id)
    assert store.thread(conv.id, leaf_id=old.id) == [system, user, old]


def test_regenerate_after_a_failed_answer_keeps_the_question(store: ChatStore) -> None:
    conv = new_conversation(store)
    assert store.branch_for_regenerate(conv.id) == ([], None)
    user = store.add_message(conv.id, role="user", content="Hi")
    assert store.branch_for_regenerate(conv.id) == ([user], user.id)


def test_editing_a_question_branches_and_the_old_branch_stays(store: ChatStore) -> None:
    conv = new_conversation(store)
    q1 = store.add_message(conv.id, role="user", content="2+2?")
    a1 = store.add_message(conv.id, role="assistant", content="4", parent_id=q1.id)
    q2 = store.add_message(conv.id, role="user", content="And 3+3?", parent_id=a1.id)
    a2 = store.add_message(conv.id, role="assistant", content="6", parent_id=q2.id)

    edited = store.edit_user_message(q2.id, "And 3*3?")
    assert (edited.parent_id, edited.role, edited.content) == (a1.id, "user", "And 3*3?")
    assert store.thread(conv.id) == [q1, a1, edited]
    a2_new = store.add_message(conv.id, role="assistant", content="9", parent_id=edited.id)

    assert store.siblings(q2.id) == [q2, edited]
    assert store.thread(conv.id, leaf_id=a2.id) == [q1, a1, q2, a2]
    assert store.thread(conv.id) == [q1, a1, edited, a2_new]
    assert store.siblings(q1.id) == [q1]  # roots are siblings of other roots of the same chat only
    with pytest.raises(ValueError, match="not a user message"):
        store.edit_user_message(a1.id, "rewritten answer")


def test_parents_must_belong_to_the_conversation(store: ChatStore) -> None:
    one, two = new_conversation(store, "one"), new_conversation(store, "two")
    msg = store.add_message(one.id, role="user", content="Hi")
    with pytest.raises(ValueError, match="another conversation"):
        store.add_message(two.id, role="assistant", content="?", parent_id=msg.id)
    with pytest.raises(ValueError, match="another conversation"):
        store.thread(two.id, leaf_id=msg.id)
    with pytest.raises(ValueError, match="role"):
        store.add_message(one.id, role="tool", content="?")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        store.add_message(one.id, role="user", content="?", status="done")  # type: ignore[arg-type]
    with pytest.raises(ChatNotFoundError):
        store.add_message(one.id, role="user", content="?", parent_id=99999)


def test_a_stopped_answer_round_trips_as_partial(db: Path) -> None:
    with ChatStore(db) as store:
        conv = new_conversation(store)
        user = store.add_message(conv.id, role="user", content="Count to 100")
        partial = store.add_message(
            conv.id, role="assistant", content="1, 2, 3", status="partial", parent_id=user.id, model="m.gguf"
        )
    with ChatStore(db) as store:
        (stored,) = [m for m in store.thread(conv.id) if m.id == partial.id]
        assert stored == partial and stored.status == "partial" and stored.model == "m.gguf"
        assert (stored.content, stored.parent_id, stored.timings) == ("1, 2, 3", user.id, None)


def test_two_stores_on_one_file_see_each_other(db: Path) -> None:
    with ChatStore(db) as gui, ChatStore(db) as cli:
        conv = new_conversation(gui)
        user = cli.add_message(conv.id, role="user", content="from the CLI")
        gui.add_message(conv.id, role="assistant", content="from the GUI", parent_id=user.id)
        assert [m.content for m in cli.thread(conv.id)] == ["from the CLI", "from the GUI"]
        cli.rename(conv.id, "renamed by CLI")
        assert gui.get_conversation(conv.id).title == "renamed by CLI"
        gui.delete_conversation(conv.id)
        assert cli.list_conversations() == []


def test_two_stores_writing_at_once_lose_nothing(db: Path) -> None:
    with ChatStore(db) as setup:
        conv = new_conversation(setup)
    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            with ChatStore(db) as store:  # one store per thread, as sqlite3 requires
                for i in range(40):
                    store.add_message(conv.id, role="user", content=f"{tag}{i}")
        except BaseException as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql(db, "SELECT COUNT(*) FROM messages") == [(80,)]


def test_threads_follow_parent_links(tmp_path: Path) -> None:
    with ChatStore(tmp_path / DB_FILENAME) as store:
        # Each step: a role and which earlier message to follow (negative: start a new root).
        roles: list[Role] = ["system", "user", "assistant"]

        @given(st.lists(st.tuples(st.sampled_from(roles), st.integers(-1, 30)), max_size=15))
        @settings(max_examples=40, deadline=None)
        def check(steps: list[tuple[Role, int]]) -> None:
            conv = new_conversation(store)
            added: list[Message] = []
            for role, pick in steps:
                parent = added[pick % len(added)].id if added and pick >= 0 else None
                added.append(store.add_message(conv.id, role=role, content=role, parent_id=parent))
            by_id = {m.id: m for m in added}
            for leaf in added:
                thread = store.thread(conv.id, leaf_id=leaf.id)
                assert thread[0].parent_id is None and thread[-1] == leaf
                assert all(b.parent_id == a.id for a, b in itertools.pairwise(thread))
                walked = [leaf]  # the same path, walked in Python from the returned messages
                while walked[0].parent_id is not None:
                    walked.insert(0, by_id[walked[0].parent_id])
                assert thread == walked
            assert store.thread(conv.id)[-1:] == added[-1:]  # default leaf: the newest message

        check()

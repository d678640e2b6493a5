"""Chat history on real SQLite files: restarts, branches, exports, damaged files, two stores at once."""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import paths
from app.core.chat.store import (
    DB_FILENAME,
    SCHEMA_VERSION,
    ChatNotFoundError,
    ChatStore,
    ChatStoreError,
    Conversation,
    Message,
    Role,
)

PLAN = {"n_ctx": 4096, "n_gpu_layers": 99, "type_k": "f16", "quant": "Q4_K_M", "vram_bytes": 3 << 29}
SETTINGS = {"system_prompt": "Be brief.", "temperature": 0.7, "top_p": 0.95, "seed": 42, "stop": ["</s>"]}
TIMINGS = {"ttft_ms": 120.5, "prompt_tok_s": 850.0, "gen_tok_s": 42.1, "n_gen_tokens": 17}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / DB_FILENAME


@pytest.fixture
def store(db: Path) -> Iterator[ChatStore]:
    with ChatStore(db) as s:
        yield s


def _conversation(store: ChatStore, title: str = "Chat") -> Conversation:
    return store.create_conversation(title=title, model="smollm2-135m-instruct", plan=PLAN, settings=SETTINGS)


def _sql(db: Path, query: str) -> list[tuple[object, ...]]:
    """Look at the file with a plain connection, as another program would."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_history_survives_a_restart(db: Path) -> None:
    with ChatStore(db) as store:
        conv = _conversation(store)
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


def test_file_is_in_wal_mode_with_a_schema_version(store: ChatStore, db: Path) -> None:
    assert _sql(db, "PRAGMA journal_mode") == [("wal",)]
    assert _sql(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_conversations_are_listed_most_recent_first_and_can_be_changed(store: ChatStore) -> None:
    first, second = _conversation(store, "first"), _conversation(store, "second")
    assert [c.title for c in store.list_conversations()] == ["second", "first"]
    renamed = store.rename(first.id, "renamed")
    assert renamed.title == "renamed" and renamed.updated_at >= first.updated_at
    assert [c.id for c in store.list_conversations()] == [first.id, second.id]
    assert [c.id for c in store.list_conversations(limit=1)] == [first.id]
    assert store.update_settings(first.id, {"temperature": 0.2}).settings == {"temperature": 0.2}
    assert store.update_plan(first.id, {"n_ctx": 8192}).plan == {"n_ctx": 8192}
    with pytest.raises(ChatNotFoundError):
        store.rename(12345, "nope")


def test_delete_cascades_to_messages(store: ChatStore, db: Path) -> None:
    keep, gone = _conversation(store, "keep"), _conversation(store, "gone")
    store.add_message(keep.id, role="user", content="stays")
    parent = store.add_message(gone.id, role="user", content="q")
    store.add_message(gone.id, role="assistant", content="a", parent_id=parent.id)
    store.delete_conversation(gone.id)
    store.delete_conversation(gone.id)  # already gone: not an error
    assert _sql(db, "SELECT content FROM messages") == [("stays",)]
    with pytest.raises(ChatNotFoundError):
        store.get_conversation(gone.id)
    with pytest.raises(ChatNotFoundError):
        store.add_message(gone.id, role="user", content="late")


def test_regenerate_adds_a_sibling_and_keeps_the_old_answer(store: ChatStore) -> None:
    conv = _conversation(store)
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
    conv = _conversation(store)
    assert store.branch_for_regenerate(conv.id) == ([], None)
    user = store.add_message(conv.id, role="user", content="Hi")
    assert store.branch_for_regenerate(conv.id) == ([user], user.id)


def test_editing_a_question_branches_and_the_old_branch_stays(store: ChatStore) -> None:
    conv = _conversation(store)
    q1 = store.add_message(conv.id, role="user", content="2+2?")
    a1 = store.add_message(conv.id, role="assistant", content="4", parent_id=q1.id)
    q2 = store.add_message(conv.id, role="user", content="And 3+3?", parent_id=a1.id)
    a2 = store.add_message(conv.id, role="assistant", content="6", parent_id=q2.id)

    edited = store.edit_user_message(q2.id, "And 3*3?")
    assert (edited.parent_id, edited.role, edited.content) == (a1.id, "user", "And 3*3?")
    assert store.thread(conv.id) == [q1, a1, edited]
    a2_new = store.add_message(conv.id, role="assistant", content="9", parent_id=edited.id)

    assert store.siblings(q2.id) == [q2, edited]
    assert store.latest_leaf(q2.id) == a2 and store.latest_leaf(edited.id) == a2_new
    assert store.thread(conv.id, leaf_id=store.latest_leaf(q2.id).id) == [q1, a1, q2, a2]
    assert store.thread(conv.id) == [q1, a1, edited, a2_new]
    assert store.siblings(q1.id) == [q1]  # roots are siblings of other roots of the same chat only
    with pytest.raises(ValueError, match="not a user message"):
        store.edit_user_message(a1.id, "rewritten answer")


def test_parents_must_belong_to_the_conversation(store: ChatStore) -> None:
    one, two = _conversation(store, "one"), _conversation(store, "two")
    msg = store.add_message(one.id, role="user", content="Hi")
    with pytest.raises(ValueError, match="another conversation"):
        store.add_message(two.id, role="assistant", content="?", parent_id=msg.id)
    with pytest.raises(ValueError, match="another conversation"):
        store.thread(two.id, leaf_id=msg.id)
    with pytest.raises(ValueError, match="role"):
        store.add_message(one.id, role="tool", content="?")  # type: ignore[arg-type]
    with pytest.raises(ChatNotFoundError):
        store.add_message(one.id, role="user", content="?", parent_id=99999)


def test_a_stopped_answer_round_trips_as_partial(db: Path) -> None:
    with ChatStore(db) as store:
        conv = _conversation(store)
        user = store.add_message(conv.id, role="user", content="Count to 100")
        partial = store.add_message(
            conv.id, role="assistant", content="1, 2, 3", status="partial", parent_id=user.id, model="m.gguf"
        )
    with ChatStore(db) as store:
        (stored,) = [m for m in store.thread(conv.id) if m.id == partial.id]
        assert stored == partial and stored.status == "partial" and stored.model == "m.gguf"
        done = store.update_message(partial.id, content="1, 2, 3, 4", status="complete", timings=TIMINGS)
        assert (done.content, done.status, done.timings, done.parent_id) == (
            "1, 2, 3, 4",
            "complete",
            TIMINGS,
            user.id,
        )
        assert store.update_message(partial.id, status="error").content == "1, 2, 3, 4"


def test_export_markdown_has_the_turns_code_and_stopped_marks(store: ChatStore) -> None:
    conv = _conversation(store, "Python help")
    code = "Here:\n\n```python\ndef f(x):\n    return x * 2  # **not bold**\n```\n"
    user = store.add_message(conv.id, role="user", content="Write f")
    answer = store.add_message(conv.id, role="assistant", content=code, parent_id=user.id)
    user2 = store.add_message(conv.id, role="user", content="Now g", parent_id=answer.id)
    store.add_message(
        conv.id, role="assistant", content="```python\ndef g(", status="partial", parent_id=user2.id
    )

    text = store.export_markdown(conv.id)
    assert text.startswith("# Python help\n")
    assert "`smollm2-135m-instruct`" in text and "n_ctx 4096" in text and "vram_bytes 1.50 GiB" in text
    assert text.count("**User**") == 2 and text.count("**Assistant**") == 2
    assert code.rstrip("\n") in text  # verbatim, markdown inside code untouched
    assert text.rstrip().endswith("*(stopped)*") and text.count("(stopped)") == 1
    assert text.count("```") % 2 == 0  # the stopped code block is closed before the mark


def test_export_json_round_trips_with_all_branches(store: ChatStore) -> None:
    conv = _conversation(store)
    user = store.add_message(conv.id, role="user", content="Hi")
    old = store.add_message(conv.id, role="assistant", content="Hello", parent_id=user.id, timings=TIMINGS)
    new = store.add_message(conv.id, role="assistant", content="Hey", parent_id=user.id, status="partial")

    exported = store.export_json(conv.id)
    assert json.loads(json.dumps(exported)) == exported
    assert exported["conversation"]["plan"] == PLAN and exported["conversation"]["title"] == "Chat"
    assert [m["id"] for m in exported["thread"]] == [user.id, new.id]
    assert [m["id"] for m in exported["messages"]] == [user.id, old.id, new.id]
    assert exported["messages"][1]["timings"] == TIMINGS


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
        conv = _conversation(store)
        store.add_message(conv.id, role="user", content="fresh start")
    with ChatStore(db) as store:
        assert store.recovered_from is None
        assert [m.content for m in store.thread(conv.id)] == ["fresh start"]


def test_a_file_with_damaged_pages_is_moved_aside(db: Path) -> None:
    with ChatStore(db) as store:
        conv = _conversation(store)
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
    _sql(db, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ChatStoreError, match="newer version") as info:
        ChatStore(db)
    assert info.value.hint is not None and str(db) in info.value.hint
    assert db.is_file() and not list(db.parent.glob("*.corrupt-*"))


def test_two_stores_on_one_file_see_each_other(db: Path) -> None:
    with ChatStore(db) as gui, ChatStore(db) as cli:
        conv = _conversation(gui)
        user = cli.add_message(conv.id, role="user", content="from the CLI")
        gui.add_message(conv.id, role="assistant", content="from the GUI", parent_id=user.id)
        assert [m.content for m in cli.thread(conv.id)] == ["from the CLI", "from the GUI"]
        cli.rename(conv.id, "renamed by CLI")
        assert gui.get_conversation(conv.id).title == "renamed by CLI"
        gui.delete_conversation(conv.id)
        assert cli.list_conversations() == []


def test_two_stores_writing_at_once_lose_nothing(db: Path) -> None:
    with ChatStore(db) as setup:
        conv = _conversation(setup)
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
    assert _sql(db, "SELECT COUNT(*) FROM messages") == [(80,)]


def test_threads_follow_parent_links(tmp_path: Path) -> None:
    with ChatStore(tmp_path / DB_FILENAME) as store:
        # Each step: a role and which earlier message to follow (negative: start a new root).
        roles: list[Role] = ["system", "user", "assistant"]

        @given(st.lists(st.tuples(st.sampled_from(roles), st.integers(-1, 30)), max_size=15))
        @settings(max_examples=40, deadline=None)
        def check(steps: list[tuple[Role, int]]) -> None:
            conv = _conversation(store)
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

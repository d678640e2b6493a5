"""Exports: Markdown with verbatim code and stopped marks, JSON with every branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.chat.export import suggested_file_name
from app.core.chat.store import ChatStore
from app.core.errors import ChatStoreError
from tests.core.chat.samples import PLAN, TIMINGS, new_conversation


def test_export_markdown_has_the_turns_code_and_stopped_marks(store: ChatStore) -> None:
    conv = new_conversation(store, "Python help")
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
    conv = new_conversation(store)
    user = store.add_message(conv.id, role="user", content="Hi")
    old = store.add_message(conv.id, role="assistant", content="Hello", parent_id=user.id, timings=TIMINGS)
    new = store.add_message(conv.id, role="assistant", content="Hey", parent_id=user.id, status="partial")

    exported = store.export_json(conv.id)
    assert json.loads(json.dumps(exported)) == exported
    assert exported["conversation"]["plan"] == PLAN and exported["conversation"]["title"] == "Chat"
    assert [m["id"] for m in exported["thread"]] == [user.id, new.id]
    assert [m["id"] for m in exported["messages"]] == [user.id, old.id, new.id]
    assert exported["messages"][1]["timings"] == TIMINGS


def test_export_to_a_file_and_a_suggested_name(store: ChatStore, tmp_path: Path) -> None:
    conv = new_conversation(store, 'What is "2/3" of 9?')
    user = store.add_message(conv.id, role="user", content="Hi")
    store.add_message(conv.id, role="assistant", content="Héllo", parent_id=user.id)
    name = suggested_file_name(conv.title, "md")
    assert name == "What is 2 3 of 9.md" and suggested_file_name("  ..  ", "json") == "chat.json"
    store.export_to(conv.id, tmp_path / name, "md")
    assert (tmp_path / name).read_text(encoding="utf-8") == store.export_markdown(conv.id)
    store.export_to(conv.id, tmp_path / "c.json", "json")
    assert json.loads((tmp_path / "c.json").read_text(encoding="utf-8")) == store.export_json(conv.id)
    with pytest.raises(ChatStoreError, match="could not be saved") as info:
        store.export_to(conv.id, tmp_path / "no such folder" / "c.md", "md")
    assert info.value.hint and "another folder" in info.value.hint
    with pytest.raises(ValueError, match="format"):
        store.export_to(conv.id, tmp_path / "c.txt", "txt")

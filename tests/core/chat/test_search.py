"""Conversation search: titles and the text of every message (every branch), any case, all words."""

from __future__ import annotations

from app.core.chat.store import ChatStore
from tests.core.chat.samples import new_conversation


def test_search_matches_titles_and_messages_in_any_branch(store: ChatStore) -> None:
    france = new_conversation(store, "Capitals of Europe")
    q = store.add_message(france.id, role="user", content="What is the capital of France?")
    store.add_message(france.id, role="assistant", content="Paris, on the Seine.", parent_id=q.id)
    # the France question is on a side branch now
    store.edit_user_message(q.id, "What is the capital of Germany?")
    cooking = new_conversation(store, "Cooking")
    store.add_message(cooking.id, role="user", content="How long do I boil an ÉGG?")
    empty = new_conversation(store, "Empty chat")

    def ids(query: str) -> list[int]:
        return [c.id for c in store.search_conversations(query)]

    assert ids("seine") == [france.id]  # an answer's text, another case
    assert ids("europe") == [france.id]  # the title
    assert ids("germany") == [france.id] and ids("FRANCE") == [france.id]
    assert ids("égg") == [cooking.id]  # case folded beyond ASCII
    assert ids("capital paris") == [france.id] and ids("capital boil") == []  # every word must match
    assert ids("chat") == [empty.id]
    assert ids("100%") == [] and ids("_") == []  # no wildcards: the characters themselves
    assert ids("  ") == [empty.id, cooking.id, france.id]  # nothing to look for: all, newest first
    assert ids("") == [c.id for c in store.list_conversations()]

"""Trimming a history to the context: oldest turns go first and whole; the latest question always stays."""

from __future__ import annotations

import pytest

from app.core.chat.render import render
from app.core.chat.trim import trim_history
from app.core.errors import ContextOverflowError
from tests.core.chat.samples import SYSTEM, builtin


def words(text: str) -> int:
    return len(text.split())


def test_trim_history_drops_oldest_pairs() -> None:
    messages = [SYSTEM]
    for i in range(5):
        messages += [
            {"role": "user", "content": f"question {i} " + "w " * 10},
            {"role": "assistant", "content": f"answer {i} " + "w " * 10},
        ]
    messages.append({"role": "user", "content": "latest"})
    template = builtin("ChatML")
    full = words(render(template, messages))
    kept, n_dropped = trim_history(
        messages, count_tokens=words, budget_tokens=full, render_prompt=lambda m: render(template, m)
    )
    assert (kept, n_dropped) == (messages, 0)

    budget = full - 20  # one pair (2 x 12 words) too many
    kept, n_dropped = trim_history(
        messages, count_tokens=words, budget_tokens=budget, render_prompt=lambda m: render(template, m)
    )
    assert n_dropped == 2
    assert kept == [SYSTEM, *messages[3:]]
    assert words(render(template, kept)) <= budget

    minimum = words(render(template, [SYSTEM, messages[-1]]))
    kept, n_dropped = trim_history(
        messages, count_tokens=words, budget_tokens=minimum, render_prompt=lambda m: render(template, m)
    )
    assert (kept, n_dropped) == ([SYSTEM, messages[-1]], 10)

    with pytest.raises(ContextOverflowError) as info:
        trim_history(
            messages,
            count_tokens=words,
            budget_tokens=minimum - 1,
            render_prompt=lambda m: render(template, m),
        )
    assert str(info.value) == (
        f"The system prompt and your message need {minimum} tokens, "
        f"but the context leaves room for {minimum - 1}."
    )
    assert info.value.hint is not None and "larger context" in info.value.hint


def test_trim_history_keeps_a_leading_assistant_turn_whole() -> None:
    messages = [
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": "a b c"},
        {"role": "assistant", "content": "d e f"},
        {"role": "user", "content": "latest"},
    ]
    template = builtin("Gemma")
    budget = words(render(template, messages[1:]))
    kept, n_dropped = trim_history(
        messages, count_tokens=words, budget_tokens=budget, render_prompt=lambda m: render(template, m)
    )
    assert (kept, n_dropped) == (messages[1:], 1)

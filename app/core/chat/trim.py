"""Fit a conversation into the context by leaving out its oldest turns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from app.core.errors import ContextOverflowError

if TYPE_CHECKING:  # template.py imports this module to offer trim_history() beside select_template()
    from app.core.chat.template import Message


def trim_history(
    messages: Sequence[Message],
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    render_prompt: Callable[[Sequence[Message]], str],
) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns until the prompt fits; returns (kept messages, number of messages dropped).
    ``render_prompt`` turns messages into the prompt (the chat template, wherever it runs).

    Leading system messages and everything from the latest user message on are always kept; the
    turns between go whole (a user message with the replies that follow it), oldest first.
    """
    n_head = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=n_head)
    last_user = max(last_user, n_head)
    head, history, tail = messages[:n_head], messages[n_head:last_user], messages[last_user:]
    # Where dropping k turns cuts `history`: k = 0 keeps it all, the last entry drops it all.
    cuts = [0, *(i for i, m in enumerate(history) if i > 0 and m.get("role") == "user"), len(history)]

    def prompt_tokens(k: int) -> int:
        kept = [*head, *history[cuts[k] :], *tail]
        return count_tokens(render_prompt(kept))

    def kept(k: int) -> tuple[list[dict[str, str]], int]:
        return [dict(m) for m in (*head, *history[cuts[k] :], *tail)], cuts[k]

    if prompt_tokens(0) <= budget_tokens:
        return kept(0)
    n_min = prompt_tokens(len(cuts) - 1)
    if n_min > budget_tokens:
        raise ContextOverflowError(
            f"The system prompt and your message need {n_min} tokens, but the context leaves room "
            f"for {budget_tokens}.",
            hint="Load the model with a larger context, or shorten the message or the system prompt.",
        )
    # Fewer turns never make a longer prompt, so binary search: log2(turns) renders and counts
    # instead of one per turn, which matters once tokenizing a long history takes milliseconds.
    lo, hi = 0, len(cuts) - 1  # prompt_tokens(lo) > budget >= prompt_tokens(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prompt_tokens(mid) <= budget_tokens:
            hi = mid
        else:
            lo = mid
    return kept(hi)

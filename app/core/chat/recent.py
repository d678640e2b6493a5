"""The models the chat used last, most recent first: the window's model picker lists them first
and the chat loads the first one again when the app starts (if it still fits).

Saved as one JSON list (the GUI keeps it under ``chat/recent_models`` in its settings); a damaged
or hand-edited value reads as an empty list, never as a crash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from app.core.chat.model_ref import ModelRef, same_file

MAX_RECENT_MODELS = 8  # a picker's worth; older ones are still in the library


def remember(recent: Sequence[ModelRef], used: ModelRef) -> tuple[ModelRef, ...]:
    """``recent`` with ``used`` first (its older entry, same file, dropped), at most MAX_RECENT_MODELS."""
    rest = [r for r in recent if not same_file(r.path, used.path)]
    return (used, *rest)[:MAX_RECENT_MODELS]


def to_json(recent: Sequence[ModelRef]) -> str:
    return json.dumps([r.to_dict() for r in recent])


def from_json(text: object) -> tuple[ModelRef, ...]:
    try:
        data = json.loads(text) if isinstance(text, str) and text else []
    except (ValueError, RecursionError):
        return ()
    if not isinstance(data, list):
        return ()
    refs = (ModelRef.from_dict(item) for item in data)
    return tuple(r for r in refs if r is not None)[:MAX_RECENT_MODELS]

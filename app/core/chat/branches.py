"""Where each message of a thread sits among its alternatives: a regenerated answer or an edited
question is a sibling of the message it replaced, and the thread shows one sibling at a time
(``‹ 2/3 ›``, as LM Studio shows it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.core.chat.records import Message


@dataclass(frozen=True)
class Branch:
    """A message's siblings (itself included, oldest first) and its place among them."""

    sibling_ids: tuple[int, ...]
    index: int  # 0-based position of the message in ``sibling_ids``

    @property
    def count(self) -> int:
        return len(self.sibling_ids)

    @property
    def previous_id(self) -> int | None:
        return self.sibling_ids[self.index - 1] if self.index > 0 else None

    @property
    def next_id(self) -> int | None:
        return self.sibling_ids[self.index + 1] if self.index + 1 < self.count else None

    def label(self) -> str:
        """ "2/3": this message's number among its versions."""
        return f"{self.index + 1}/{self.count}"


def branches_of(thread: Sequence[Message], links: Iterable[tuple[int, int | None]]) -> dict[int, Branch]:
    """Each thread message's Branch, from every (id, parent id) of its conversation in id order."""
    children: dict[int | None, list[int]] = {}
    for mid, parent in links:
        children.setdefault(parent, []).append(mid)
    out = {}
    for m in thread:
        siblings = tuple(children.get(m.parent_id, [m.id]))
        out[m.id] = Branch(siblings, siblings.index(m.id))
    return out

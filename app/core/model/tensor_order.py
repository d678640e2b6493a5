"""The order people expect tensors in: ``blk.2`` before ``blk.10`` (a GGUF's header, and a plain
string sort, give ``blk.0, blk.1, blk.10, blk.11, …, blk.2``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[str | int, ...]:
    """``"blk.10.attn_q.weight"`` → ``("blk.", 10, ".attn_q.weight")``: runs of digits compare as
    numbers, the rest case-insensitively. ``re.split`` with a group puts text at even positions and
    numbers at odd ones, so two keys never compare a number with a string."""
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(_DIGITS.split(name)))


def natural_sorted(items: Iterable[T], *, key: Callable[[T], str] = str) -> list[T]:
    """``items`` in natural order of ``key(item)`` (the item itself for strings); stable."""
    return sorted(items, key=lambda item: natural_key(key(item)))

"""Generated blocks in a Markdown file: ``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->``, each on a
line of its own; whatever lies between the two lines belongs to the generator named NAME."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(r"^<!-- (/?)bench:([a-z0-9_]+) -->$", re.MULTILINE)


class ReadmeBlockError(ValueError):
    """The README's markers are not well formed; the message names the marker and its line."""


@dataclass(frozen=True)
class Block:
    name: str
    body_start: int  # offset of the first character after the opening marker's line
    body_end: int  # offset of the closing marker
    body: str


def start_marker(name: str) -> str:
    return f"<!-- bench:{name} -->"


def end_marker(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def find_blocks(text: str) -> dict[str, Block]:
    """Every block in ``text``, in order; an unclosed, stray, nested or repeated marker is an error."""
    blocks: dict[str, Block] = {}
    open_name, open_at = None, 0
    for m in _MARKER.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        where = f"line {_line(text, m.start())}"
        if not closing:
            if open_name is not None:
                raise ReadmeBlockError(f"{start_marker(name)} at {where} opens inside {open_name}")
            if name in blocks:
                raise ReadmeBlockError(f"{start_marker(name)} at {where} appears a second time")
            open_name, open_at = name, m.end() + 1
        elif name != open_name:
            raise ReadmeBlockError(f"{end_marker(name)} at {where} closes a block that is not open")
        else:
            blocks[name] = Block(name, open_at, m.start(), text[open_at : m.start()])
            open_name = None
    if open_name is not None:
        raise ReadmeBlockError(f"{start_marker(open_name)} is never closed")
    return blocks


def replace_blocks(text: str, bodies: dict[str, str]) -> str:
    """``text`` with each named block's body replaced (a body ends with one newline)."""
    blocks = find_blocks(text)
    missing = sorted(set(bodies) - set(blocks))
    if missing:
        raise ReadmeBlockError(f"no block for {', '.join(missing)} in the README")
    out, at = [], 0
    for b in sorted(blocks.values(), key=lambda b: b.body_start):
        if b.name in bodies:
            out += [text[at : b.body_start], bodies[b.name].rstrip("\n") + "\n"]
            at = b.body_end
    return "".join([*out, text[at:]])

"""``tailorlm``: TailorLM's capabilities from a terminal, for people and scripts (``--json``).

A thin client of ``app.core`` and ``app.engine``, one module per group of commands: ``advise``
(hw, advise, catalog), ``chat`` (chat, chats), ``hub`` (search, files, pull, list, rm), ``build``
(convert, quantize), ``quality``. ``main`` parses, dispatches, and turns a ``TailorError`` into one
line on stderr with exit code 2 — never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from app.cli.main import run

    return run(argv)

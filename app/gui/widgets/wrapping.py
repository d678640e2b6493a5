"""Text that may wrap anywhere a person would break it.

A word-wrapped ``QLabel`` can only break at spaces, so a long path or file name
("/home/…/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf") is one unbreakable word that sets the label's —
and the window's — minimum width. A zero-width space after each separator gives the text layout
a place to break without changing what is shown or copied visibly.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
_SEPARATORS = re.compile(r"([/\\_\-.])")


def breakable(text: str) -> str:
    """``text`` with a break opportunity after every ``/ \\ _ - .``."""
    return _SEPARATORS.sub(r"\1" + ZWSP, text)


def unbreakable(text: str) -> str:
    """``text`` without the break opportunities :func:`breakable` added."""
    return text.replace(ZWSP, "")

"""Speeds as every front end shows them."""

from __future__ import annotations


def shown_tok_s(tok_s: float) -> float:
    """A speed rounded as it is shown: one decimal below 10 tokens/s, whole numbers above. Every
    comparison with a threshold the user reads ("below a comfortable 5") uses this too, so a
    speed shown as "5.0" is never called slower than 5."""
    return round(tok_s, 1) if round(tok_s, 1) < 10 else float(round(tok_s))


def format_tok_s(tok_s: float) -> str:
    """A speed as every front end shows it — the reasons, the plan table, the catalog overview:
    "0.4", "9.5", "12", "240", and "<0.1" for what would round to nothing. One helper, so the
    words and the table never disagree."""
    shown = shown_tok_s(tok_s)
    if shown < 0.1:
        return "<0.1"
    return f"{shown:.1f}" if shown < 10 else f"{shown:,.0f}"

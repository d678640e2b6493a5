"""A conversation as Markdown for people, or as JSON with every branch for tools."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from app.core.chat.database import SCHEMA_VERSION
from app.core.chat.records import Conversation, Message
from app.core.units import format_bytes

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")  # CommonMark code fence opener
FORMATS = {"md": "Markdown", "json": "JSON"}  # file suffix: what the window's menu calls it
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')  # not in a file name on Windows, macOS or Linux
FILE_STEM_MAX_CHARS = 80  # leaves room for a folder in the 255-byte name limit of common file systems


def suggested_file_name(title: str, fmt: str) -> str:
    """A file name for a conversation titled ``title`` exported as ``fmt`` ("md" or "json")."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; one of {tuple(FORMATS)}")
    stem = " ".join(_UNSAFE.sub(" ", title).split()).strip(" .")[:FILE_STEM_MAX_CHARS].rstrip(" .")
    return f"{stem or 'chat'}.{fmt}"


def to_markdown(conv: Conversation, thread: Sequence[Message]) -> str:
    """Title, model and plan, then the thread's turns; code blocks are kept verbatim."""
    lines = [f"# {conv.title}", "", f"- Model: `{conv.model}`"]
    summary = _plan_summary(conv.plan)
    if summary:
        lines.append(f"- Plan: {summary}")
    for msg in thread:
        body = msg.content.rstrip("\n")
        fence = _unclosed_fence(body)
        if fence:
            # An answer stopped inside a code block would otherwise swallow the rest of the file.
            body += "\n" + fence
        lines += ["", f"**{msg.role.capitalize()}**", "", body]
        if msg.status != "complete":
            lines += ["", "*(stopped)*" if msg.status == "partial" else "*(failed)*"]
    return "\n".join(lines) + "\n"


def to_json(conv: Conversation, thread: Sequence[Message], messages: Sequence[Message]) -> dict[str, Any]:
    """The conversation, its active thread and every message (all branches), JSON-ready."""
    return {
        "format": "tailorlm-chat",
        "schema_version": SCHEMA_VERSION,
        "conversation": asdict(conv),
        "thread": [asdict(msg) for msg in thread],
        "messages": [asdict(msg) for msg in messages],
    }


def _plan_summary(plan: Mapping[str, Any]) -> str:
    """``n_ctx 4096, quant Q4_K_M, vram_bytes 1.50 GiB``: the plan's scalar entries, sizes readable."""
    parts = []
    for key, value in plan.items():
        if isinstance(value, (dict, list)) or value is None:
            continue
        if key.endswith("_bytes") and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = format_bytes(value)
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _unclosed_fence(text: str) -> str | None:
    """The fence that would close a code block left open at the end of ``text``, if any."""
    open_fence: str | None = None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if not match:
            continue
        run = match.group(1)
        if open_fence is None:
            open_fence = run
        elif run[0] == open_fence[0] and len(run) >= len(open_fence) and line.strip() == run:
            open_fence = None
    return open_fence

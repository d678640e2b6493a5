"""The messages of a chat request, as a chat template takes them: ``developer`` is a system turn,
an assistant's earlier tool calls are the JSON it wrote, a tool's result is a user turn that says
whose result it is, and turns of one role in a row are joined."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from app.core.chat.request_fields import bad, json_kind, json_object, string

MAX_MESSAGES = 4096  # far above a real conversation; the context limit comes first anyway
MAX_NAME_CHARS = 64  # OpenAI: function names are a-z, A-Z, 0-9, _ and -, at most 64

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    """A message as the chat template takes it: a role the template knows, and text."""

    role: Role
    content: str


def _text_content(value: Any, param: str) -> str:
    """A message's content: a string, or text parts joined as OpenAI joins them."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            p = json_object(part, f"{param}[{i}]")
            kind = p.get("type")
            if kind == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif kind in ("image_url", "input_audio", "file"):
                raise bad(f"{param}[{i}]", f"{kind} parts are not supported: this server takes text only",
                           code="unsupported_content")  # fmt: skip
            else:
                raise bad(f"{param}[{i}]", 'expected a text part {"type": "text", "text": ...}')
        return "\n".join(texts)
    raise bad(param, f"expected a string or an array of text parts, got {json_kind(value)}")


def _tool_call_text(call: Any, param: str) -> tuple[str, str, str]:
    """(id, function name, the text the model wrote for it): an assistant's earlier tool call, as
    the model is asked to write calls (:mod:`app.core.chat.tool_calls`)."""
    c = json_object(call, param)
    fn = json_object(c.get("function"), f"{param}.function")
    name = string(fn, "name", max_chars=MAX_NAME_CHARS)
    arguments = string(fn, "arguments")
    if not name or arguments is None:
        raise bad(f"{param}.function", "a tool call needs a name and its arguments as a JSON string")
    try:
        args = json.loads(arguments)
    except ValueError:
        raise bad(f"{param}.function.arguments", "not valid JSON") from None
    call_id = c.get("id")
    text = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return (call_id if isinstance(call_id, str) else "", name, text)


def parse_messages(value: Any) -> tuple[ChatMessage, ...]:
    """The conversation for the template: ``developer`` is a system message, an assistant's tool
    calls are the JSON it wrote, a tool's result is a user turn that says whose result it is; turns
    of the same role in a row are joined (templates such as Gemma's insist that turns alternate)."""
    if not isinstance(value, list) or not value:
        raise bad("messages", "expected a non-empty array of messages")
    if len(value) > MAX_MESSAGES:
        raise bad("messages", f"at most {MAX_MESSAGES} messages")
    out: list[ChatMessage] = []
    call_names: dict[str, str] = {}
    for i, raw in enumerate(value):
        param = f"messages[{i}]"
        m = json_object(raw, param)
        role = m.get("role")
        if role in ("system", "developer", "user"):
            out.append(
                ChatMessage(
                    "system" if role == "developer" else role,
                    _text_content(m.get("content"), f"{param}.content"),
                )
            )
        elif role == "assistant":
            parts = [] if m.get("content") is None else [_text_content(m["content"], f"{param}.content")]
            calls = m.get("tool_calls") or []
            if not isinstance(calls, list):
                raise bad(f"{param}.tool_calls", "expected an array")
            for j, call in enumerate(calls):
                call_id, name, text = _tool_call_text(call, f"{param}.tool_calls[{j}]")
                call_names[call_id] = name
                parts.append(text)
            out.append(ChatMessage("assistant", "\n".join(parts)))
        elif role in ("tool", "function"):
            content = _text_content(m.get("content"), f"{param}.content")
            ref = m.get("tool_call_id")
            ref = ref if isinstance(ref, str) else ""
            own = m.get("name")
            who = call_names.get(ref) or (own if isinstance(own, str) else "") or ref
            who = f" {who}" if who else ""
            out.append(ChatMessage("user", f"Result of the tool call{who}:\n{content}"))
        else:
            raise bad(
                f"{param}.role", f"unknown role {role!r}: expected system, developer, user, assistant or tool"
            )
    joined: list[ChatMessage] = []
    for msg in out:
        if joined and joined[-1].role == msg.role:
            joined[-1] = ChatMessage(msg.role, f"{joined[-1].content}\n\n{msg.content}")
        else:
            joined.append(msg)
    return tuple(joined)

"""Tool calls for any model: the tools described in the system message, the call constrained by a
grammar so it always parses, and the answer read back as OpenAI's ``tool_calls``.

A model calls a tool by answering with one JSON object and nothing else::

    {"name": "get_weather", "arguments": {"city": "Paris"}}

The same form for every model (rather than each family's own markup) means one grammar and one
parser, and a chat template needs to know nothing of tools. With ``tool_choice`` ``"required"`` or
a function's name the grammar admits only such an object (for that function); with ``"auto"`` the
answer is either such an object — once it starts with ``{`` the grammar holds it to a valid call —
or plain text that does not start with ``{``. Arguments follow each tool's JSON schema
(:mod:`app.core.chat.json_grammar`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.chat.json_grammar import MAX_GRAMMAR_BYTES, value_rules
from app.core.chat.openai_messages import ChatMessage
from app.core.chat.openai_request import Tool, ToolChoice
from app.core.errors import SchemaError

# Whitespace the model may put around and inside the call's envelope, bounded so that a small model
# cannot pad forever (the schemas' own rules bound theirs alike).
_WS_RULE = 'tc-ws ::= | " " | "\\n" [ \\t]{0,20}'
_LEAD_RULE = "tc-lead ::= [ \\t\\n]{0,4}"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


def tool_prompt(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The system-message text that tells the model which tools it has and how to call one."""
    offered = [t for t in tools if choice in ("auto", "required") or t.name == choice]
    lines = []
    if choice == "auto":
        lines.append("You can call a tool. To call one, answer with only a JSON object of the form "
                     '{"name": TOOL_NAME, "arguments": {…}} and nothing else; otherwise answer normally.')  # fmt: skip
    else:
        lines.append("Call a tool now: answer with only a JSON object of the form "
                     '{"name": TOOL_NAME, "arguments": {…}} and nothing else.')  # fmt: skip
    lines.append("Tools:")
    for t in offered:
        schema = json.dumps(t.parameters, ensure_ascii=False, separators=(",", ":"))
        about = f": {t.description}" if t.description else ""
        lines.append(f"- {t.name}{about} Arguments (JSON schema): {schema}")
    return "\n".join(lines)


def with_tools(
    messages: Sequence[ChatMessage], tools: Sequence[Tool], choice: ToolChoice
) -> tuple[ChatMessage, ...]:
    """``messages`` with the tools described at the end of the system message (a new one first if
    there is none)."""
    text = tool_prompt(tools, choice)
    if messages and messages[0].role == "system":
        return (ChatMessage("system", f"{messages[0].content}\n\n{text}"), *messages[1:])
    return (ChatMessage("system", text), *messages)


def tool_grammar(tools: Sequence[Tool], choice: ToolChoice) -> str:
    """The GBNF grammar of an answer under ``choice`` (not "none"); raises SchemaError for a tool
    whose parameters schema cannot be turned into a grammar."""
    offered = [t for t in tools if choice in ("auto", "required") or t.name == choice]
    rules: dict[str, str] = {}
    calls = []
    for i, t in enumerate(offered):
        args, more = value_rules(t.parameters, f"tool{i}")
        rules.update(more)
        name = json.dumps(json.dumps(t.name))  # the JSON string "get_weather", as a GBNF literal
        rules[f"tc-call{i}"] = (f'"{{" tc-ws "\\"name\\"" tc-ws ":" tc-ws {name} tc-ws "," tc-ws '
                                f'"\\"arguments\\"" tc-ws ":" tc-ws {args} tc-ws "}}"')  # fmt: skip
        calls.append(f"tc-call{i}")
    rules["tc-call"] = " | ".join(calls)
    if choice == "auto":
        rules["root"] = "tc-lead (tc-call | tc-text)"
        rules["tc-text"] = "[^{ \\t\\n] .*"  # anything that does not start like a call
    else:
        rules["root"] = "tc-lead tc-call"
    lines = [f"{name} ::= {body}" for name, body in rules.items()]
    text = "\n".join([*lines, _WS_RULE, _LEAD_RULE]) + "\n"
    if len(text.encode()) > MAX_GRAMMAR_BYTES:  # each tool's schema is bounded; so are all together
        raise SchemaError(f"the tools' grammar would be larger than {MAX_GRAMMAR_BYTES // 1024} KiB",
                          hint="Offer fewer or simpler tools.")  # fmt: skip
    return text


def read_tool_call(text: str, tools: Sequence[Tool]) -> ToolCall | None:
    """The call in an answer written under :func:`tool_grammar`; None when the answer is text (or a
    call cut short by ``max_tokens``, which the caller returns as text with finish_reason
    "length")."""
    body = text.strip()
    if not body.startswith("{"):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or not any(t.name == value.get("name") for t in tools):
        return None
    arguments = json.dumps(value.get("arguments", {}), ensure_ascii=False)
    return ToolCall(f"call_{secrets.token_hex(12)}", str(value["name"]), arguments)

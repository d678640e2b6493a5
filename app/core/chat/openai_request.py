"""What a client of the OpenAI-compatible server asks for, checked before anything runs.

The bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions`` become frozen dataclasses,
or an :class:`~app.core.errors.InvalidRequestError` that names the parameter, so the server answers
a 400 in OpenAI's error shape instead of failing later. The bodies come from any program on the
machine (or the network, with a key): every field that TailorLM reads is type-checked and bounded;
fields it does not know are ignored, as OpenAI-compatible servers do, but the well-known ones it
cannot honour (``n`` > 1, ``logprobs``, images) are refused rather than silently dropped.

Settings a request leaves out are the chat's (:class:`Defaults`), so an editor plugin and the
window's chat sample alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.core.errors import InvalidRequestError

MAX_MESSAGES = 4096  # far above a real conversation; the context limit comes first anyway
MAX_STOP_STRINGS = 16  # OpenAI allows 4; llama-server any number. Each is checked every token.
MAX_STOP_CHARS = 512
MAX_TOOLS = 128  # OpenAI's own limit
MAX_NAME_CHARS = 64  # OpenAI: function names are a-z, A-Z, 0-9, _ and -, at most 64

Role = Literal["system", "user", "assistant"]
ToolChoice = Literal["none", "auto", "required"] | str  # a str other than those: that function's name


@dataclass(frozen=True)
class Options:
    """Sampling and delivery settings common to both endpoints; None: the chat's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None  # None: until the context is full
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]  # a JSON schema of the arguments object


@dataclass(frozen=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None  # json_schema only
    name: str = ""


@dataclass(frozen=True)
class ChatMessage:
    """A message as the chat template takes it: a role the template knows, and text."""

    role: Role
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: tuple[ChatMessage, ...]
    options: Options
    response_format: ResponseFormat
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "none"

    @property
    def tools_active(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompt: str
    options: Options
    echo: bool = False


# --- field readers ------------------------------------------------------------------------------


def _bad(param: str, message: str, code: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {message}", param=param, code=code)


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"expected a number, got {_kind(value)}")
    if not lo <= value <= hi:
        raise _bad(key, f"{value} is outside [{lo:g}, {hi:g}]")
    return float(value)


def _integer(body: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, f"expected an integer, got {_kind(value)}")
    if not lo <= value <= hi:
        raise _bad(key, f"{value} is outside [{lo}, {hi}]")
    return value


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(key, f"expected true or false, got {_kind(value)}")
    return value


def _string(body: Mapping[str, Any], key: str, *, max_chars: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(key, f"expected a string, got {_kind(value)}")
    if max_chars is not None and len(value) > max_chars:
        raise _bad(key, f"longer than {max_chars} characters")
    return value


def _object(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(param, f"expected an object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _unsupported(body: Mapping[str, Any]) -> None:
    """The well-known fields whose meaning TailorLM cannot give: refused, not ignored."""
    n = _integer(body, "n", 1, 128)
    if n is not None and n != 1:
        raise _bad("n", "only one choice per request is supported", code="unsupported_parameter")
    # chat: logprobs true/false and top_logprobs; completions: logprobs as a count
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs") not in (None, 0):
        raise _bad("logprobs", "log probabilities are not supported", code="unsupported_parameter")
    if body.get("logit_bias") not in (None, {}):
        raise _bad("logit_bias", "logit bias is not supported", code="unsupported_parameter")


def _options(body: Mapping[str, Any]) -> Options:
    _unsupported(body)
    max_tokens = _integer(body, "max_completion_tokens", 1, 1 << 24)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 1 << 24)
    stop_value = body.get("stop")
    if stop_value is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_value, str):
        stop = (stop_value,)
    elif isinstance(stop_value, list) and all(isinstance(s, str) for s in stop_value):
        stop = tuple(stop_value)
    else:
        raise _bad("stop", "expected a string or an array of strings")
    if len(stop) > MAX_STOP_STRINGS:
        raise _bad("stop", f"at most {MAX_STOP_STRINGS} stop strings")
    if any(not s or len(s) > MAX_STOP_CHARS for s in stop):
        raise _bad("stop", f"each stop string must have 1 to {MAX_STOP_CHARS} characters")
    stream = _flag(body, "stream")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        so = _object(stream_options, "stream_options")
        include_usage = _flag(so, "include_usage")
    return Options(
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        max_tokens=max_tokens,
        stop=stop,
        seed=_integer(body, "seed", -(1 << 63), (1 << 64) - 1),
        frequency_penalty=_number(body, "frequency_penalty", -2.0, 2.0) or 0.0,
        presence_penalty=_number(body, "presence_penalty", -2.0, 2.0) or 0.0,
        stream=stream,
        include_usage=include_usage and stream,
    )


def _model(body: Mapping[str, Any]) -> str | None:
    return _string(body, "model", max_chars=1024)


# --- messages -----------------------------------------------------------------------------------


def _text_content(value: Any, param: str) -> str:
    """A message's content: a string, or text parts joined as OpenAI joins them."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            p = _object(part, f"{param}[{i}]")
            kind = p.get("type")
            if kind == "text" and isinstance(p.get("text"), str):
                texts.append(p["text"])
            elif kind in ("image_url", "input_audio", "file"):
                raise _bad(f"{param}[{i}]", f"{kind} parts are not supported: this server takes text only",
                           code="unsupported_content")  # fmt: skip
            else:
                raise _bad(f"{param}[{i}]", 'expected a text part {"type": "text", "text": ...}')
        return "\n".join(texts)
    raise _bad(param, f"expected a string or an array of text parts, got {_kind(value)}")


def _tool_call_text(call: Any, param: str) -> tuple[str, str, str]:
    """(id, function name, the text the model wrote for it): an assistant's earlier tool call, as
    the model is asked to write calls (:mod:`app.core.chat.tool_calls`)."""
    c = _object(call, param)
    fn = _object(c.get("function"), f"{param}.function")
    name = _string(fn, "name", max_chars=MAX_NAME_CHARS)
    arguments = _string(fn, "arguments")
    if not name or arguments is None:
        raise _bad(f"{param}.function", "a tool call needs a name and its arguments as a JSON string")
    try:
        args = json.loads(arguments)
    except ValueError:
        raise _bad(f"{param}.function.arguments", "not valid JSON") from None
    call_id = c.get("id")
    text = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return (call_id if isinstance(call_id, str) else "", name, text)


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    """The conversation for the template: ``developer`` is a system message, an assistant's tool
    calls are the JSON it wrote, a tool's result is a user turn that says whose result it is; turns
    of the same role in a row are joined (templates such as Gemma's insist that turns alternate)."""
    if not isinstance(value, list) or not value:
        raise _bad("messages", "expected a non-empty array of messages")
    if len(value) > MAX_MESSAGES:
        raise _bad("messages", f"at most {MAX_MESSAGES} messages")
    out: list[ChatMessage] = []
    call_names: dict[str, str] = {}
    for i, raw in enumerate(value):
        param = f"messages[{i}]"
        m = _object(raw, param)
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
                raise _bad(f"{param}.tool_calls", "expected an array")
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
            raise _bad(
                f"{param}.role", f"unknown role {role!r}: expected system, developer, user, assistant or tool"
            )
    joined: list[ChatMessage] = []
    for msg in out:
        if joined and joined[-1].role == msg.role:
            joined[-1] = ChatMessage(msg.role, f"{joined[-1].content}\n\n{msg.content}")
        else:
            joined.append(msg)
    return tuple(joined)


# --- tools and formats --------------------------------------------------------------------------


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], ToolChoice]:
    value = body.get("tools")
    if value is None:
        tools: tuple[Tool, ...] = ()
    elif not isinstance(value, list):
        raise _bad("tools", f"expected an array, got {_kind(value)}")
    elif len(value) > MAX_TOOLS:
        raise _bad("tools", f"at most {MAX_TOOLS} tools")
    else:
        found: list[Tool] = []
        for i, raw in enumerate(value):
            t = _object(raw, f"tools[{i}]")
            if t.get("type", "function") != "function":
                raise _bad(
                    f"tools[{i}].type", "only function tools are supported", code="unsupported_parameter"
                )
            fn = _object(t.get("function"), f"tools[{i}].function")
            name = _string(fn, "name", max_chars=MAX_NAME_CHARS)
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise _bad(f"tools[{i}].function.name", "1 to 64 letters, digits, _ or -")
            if any(x.name == name for x in found):
                raise _bad(f"tools[{i}].function.name", f"{name!r} is defined twice")
            params = fn.get("parameters", {"type": "object", "properties": {}})
            found.append(
                Tool(
                    name, _string(fn, "description") or "", _object(params, f"tools[{i}].function.parameters")
                )
            )
        tools = tuple(found)
    choice_value = body.get("tool_choice")
    choice: ToolChoice
    if choice_value is None:
        choice = "auto" if tools else "none"
    elif choice_value in ("none", "auto", "required"):
        choice = choice_value
    elif isinstance(choice_value, Mapping):
        fn = _object(choice_value.get("function"), "tool_choice.function")
        name = fn.get("name")
        if not any(t.name == name for t in tools):
            raise _bad("tool_choice", f"names a function that is not among the tools: {name!r}")
        choice = str(name)
    else:
        raise _bad(
            "tool_choice", 'expected none, auto, required or {"type": "function", "function": {"name": ...}}'
        )
    if choice != "none" and not tools:
        raise _bad("tool_choice", "tool_choice needs tools")
    return tools, choice


def _response_format(body: Mapping[str, Any]) -> ResponseFormat:
    value = body.get("response_format")
    if value is None:
        return ResponseFormat("text")
    rf = _object(value, "response_format")
    kind = rf.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind == "json_schema":
        js = _object(rf.get("json_schema"), "response_format.json_schema")
        schema = js.get("schema", {})
        if not isinstance(schema, Mapping | bool):
            raise _bad("response_format.json_schema.schema", f"expected an object, got {_kind(schema)}")
        name = js.get("name")
        return ResponseFormat(
            "json_schema",
            schema if isinstance(schema, Mapping) else {},
            name if isinstance(name, str) else "",
        )
    raise _bad("response_format.type", "expected text, json_object or json_schema")


# --- the two requests ---------------------------------------------------------------------------


def parse_chat_request(body: Any) -> ChatRequest:
    """A checked ``/v1/chat/completions`` request; raises InvalidRequestError."""
    b = _object(body, "body")
    tools, choice = _tools(b)
    fmt = _response_format(b)
    if fmt.kind != "text" and choice != "none":
        raise _bad("response_format", "a JSON response format and tools cannot be combined in one request")
    return ChatRequest(_model(b), _messages(b.get("messages")), _options(b), fmt, tools, choice)


def parse_completion_request(body: Any) -> CompletionRequest:
    """A checked ``/v1/completions`` request; raises InvalidRequestError."""
    b = _object(body, "body")
    prompt = b.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch of one
    if not isinstance(prompt, str):
        raise _bad("prompt", "expected a string (one prompt per request)")
    if b.get("suffix") not in (None, ""):
        raise _bad("suffix", "fill-in-the-middle is not supported", code="unsupported_parameter")
    if b.get("best_of") not in (None, 1):
        raise _bad("best_of", "only one choice per request is supported", code="unsupported_parameter")
    return CompletionRequest(_model(b), prompt, _options(b), _flag(b, "echo"))

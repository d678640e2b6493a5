"""What a client of the OpenAI-compatible server asks for, checked before anything runs.

The bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions`` become frozen dataclasses,
or an :class:`~app.core.errors.InvalidRequestError` that names the parameter, so the server answers
a 400 in OpenAI's error shape instead of failing later. The bodies come from any program on the
machine (or the network, with a key): every field that TailorLM reads is type-checked and bounded;
fields it does not know are ignored, as OpenAI-compatible servers do, but the well-known ones it
cannot honour (``n`` > 1, ``logprobs``, images) are refused rather than silently dropped.

Field readers are :mod:`app.core.chat.request_fields`; the messages, as a template takes them,
:mod:`app.core.chat.openai_messages`. Settings a request leaves out are the chat's
(``app.server.completions.sampling_for``), so an editor plugin and the window's chat sample alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.core.chat.openai_messages import MAX_NAME_CHARS, ChatMessage, parse_messages
from app.core.chat.request_fields import bad, flag, integer, json_kind, json_object, number, string

MAX_STOP_STRINGS = 16  # OpenAI allows 4; llama-server any number. Each is checked every token.
MAX_STOP_CHARS = 512
MAX_TOOLS = 128  # OpenAI's own limit

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


def _unsupported(body: Mapping[str, Any]) -> None:
    """The well-known fields whose meaning TailorLM cannot give: refused, not ignored."""
    n = integer(body, "n", 1, 128)
    if n is not None and n != 1:
        raise bad("n", "only one choice per request is supported", code="unsupported_parameter")
    # chat: logprobs true/false and top_logprobs; completions: logprobs as a count
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs") not in (None, 0):
        raise bad("logprobs", "log probabilities are not supported", code="unsupported_parameter")
    if body.get("logit_bias") not in (None, {}):
        raise bad("logit_bias", "logit bias is not supported", code="unsupported_parameter")


def _options(body: Mapping[str, Any]) -> Options:
    _unsupported(body)
    max_tokens = integer(body, "max_completion_tokens", 1, 1 << 24)
    if max_tokens is None:
        max_tokens = integer(body, "max_tokens", 1, 1 << 24)
    stop_value = body.get("stop")
    if stop_value is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_value, str):
        stop = (stop_value,)
    elif isinstance(stop_value, list) and all(isinstance(s, str) for s in stop_value):
        stop = tuple(stop_value)
    else:
        raise bad("stop", "expected a string or an array of strings")
    if len(stop) > MAX_STOP_STRINGS:
        raise bad("stop", f"at most {MAX_STOP_STRINGS} stop strings")
    if any(not s or len(s) > MAX_STOP_CHARS for s in stop):
        raise bad("stop", f"each stop string must have 1 to {MAX_STOP_CHARS} characters")
    stream = flag(body, "stream")
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        so = json_object(stream_options, "stream_options")
        include_usage = flag(so, "include_usage")
    return Options(
        temperature=number(body, "temperature", 0.0, 2.0),
        top_p=number(body, "top_p", 0.0, 1.0),
        max_tokens=max_tokens,
        stop=stop,
        seed=integer(body, "seed", -(1 << 63), (1 << 64) - 1),
        frequency_penalty=number(body, "frequency_penalty", -2.0, 2.0) or 0.0,
        presence_penalty=number(body, "presence_penalty", -2.0, 2.0) or 0.0,
        stream=stream,
        include_usage=include_usage and stream,
    )


def _model(body: Mapping[str, Any]) -> str | None:
    return string(body, "model", max_chars=1024)


# --- tools and formats --------------------------------------------------------------------------


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], ToolChoice]:
    value = body.get("tools")
    if value is None:
        tools: tuple[Tool, ...] = ()
    elif not isinstance(value, list):
        raise bad("tools", f"expected an array, got {json_kind(value)}")
    elif len(value) > MAX_TOOLS:
        raise bad("tools", f"at most {MAX_TOOLS} tools")
    else:
        found: list[Tool] = []
        for i, raw in enumerate(value):
            t = json_object(raw, f"tools[{i}]")
            if t.get("type", "function") != "function":
                raise bad(
                    f"tools[{i}].type", "only function tools are supported", code="unsupported_parameter"
                )
            fn = json_object(t.get("function"), f"tools[{i}].function")
            name = string(fn, "name", max_chars=MAX_NAME_CHARS)
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise bad(f"tools[{i}].function.name", "1 to 64 letters, digits, _ or -")
            if any(x.name == name for x in found):
                raise bad(f"tools[{i}].function.name", f"{name!r} is defined twice")
            params = fn.get("parameters", {"type": "object", "properties": {}})
            found.append(
                Tool(
                    name,
                    string(fn, "description") or "",
                    json_object(params, f"tools[{i}].function.parameters"),
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
        fn = json_object(choice_value.get("function"), "tool_choice.function")
        name = fn.get("name")
        if not any(t.name == name for t in tools):
            raise bad("tool_choice", f"names a function that is not among the tools: {name!r}")
        choice = str(name)
    else:
        raise bad(
            "tool_choice", 'expected none, auto, required or {"type": "function", "function": {"name": ...}}'
        )
    if choice != "none" and not tools:
        raise bad("tool_choice", "tool_choice needs tools")
    return tools, choice


def _response_format(body: Mapping[str, Any]) -> ResponseFormat:
    value = body.get("response_format")
    if value is None:
        return ResponseFormat("text")
    rf = json_object(value, "response_format")
    kind = rf.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind == "json_schema":
        js = json_object(rf.get("json_schema"), "response_format.json_schema")
        schema = js.get("schema", {})
        if not isinstance(schema, Mapping | bool):
            raise bad("response_format.json_schema.schema", f"expected an object, got {json_kind(schema)}")
        name = js.get("name")
        return ResponseFormat(
            "json_schema",
            schema if isinstance(schema, Mapping) else {},
            name if isinstance(name, str) else "",
        )
    raise bad("response_format.type", "expected text, json_object or json_schema")


# --- the two requests ---------------------------------------------------------------------------


def parse_chat_request(body: Any) -> ChatRequest:
    """A checked ``/v1/chat/completions`` request; raises InvalidRequestError."""
    b = json_object(body, "body")
    tools, choice = _tools(b)
    fmt = _response_format(b)
    if fmt.kind != "text" and choice != "none":
        raise bad("response_format", "a JSON response format and tools cannot be combined in one request")
    return ChatRequest(_model(b), parse_messages(b.get("messages")), _options(b), fmt, tools, choice)


def parse_completion_request(body: Any) -> CompletionRequest:
    """A checked ``/v1/completions`` request; raises InvalidRequestError."""
    b = json_object(body, "body")
    prompt = b.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # a batch of one
    if not isinstance(prompt, str):
        raise bad("prompt", "expected a string (one prompt per request)")
    if b.get("suffix") not in (None, ""):
        raise bad("suffix", "fill-in-the-middle is not supported", code="unsupported_parameter")
    if b.get("best_of") not in (None, 1):
        raise bad("best_of", "only one choice per request is supported", code="unsupported_parameter")
    return CompletionRequest(_model(b), prompt, _options(b), flag(b, "echo"))

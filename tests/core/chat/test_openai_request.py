"""What the server's clients send, checked and turned into what a chat template takes (issue 18)."""

from __future__ import annotations

import json

import pytest

from app.core.chat.openai_messages import ChatMessage
from app.core.chat.openai_request import Tool, parse_chat_request, parse_completion_request
from app.core.chat.tool_calls import read_tool_call, tool_grammar, with_tools
from app.core.errors import InvalidRequestError, SchemaError

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip


def test_defaults_and_openai_names() -> None:
    req = parse_chat_request({"messages": [{"role": "user", "content": "Hi"}], "max_completion_tokens": 9,
                              "stop": "END", "seed": 2**40, "stream": True, "stream_options": {"include_usage": True}})  # fmt: skip
    o = req.options
    assert (o.temperature, o.top_p, o.max_tokens, o.stop, o.seed, o.stream, o.include_usage) == (
        None, None, 9, ("END",), 2**40, True, True)  # fmt: skip
    assert req.tool_choice == "none" and req.response_format.kind == "text"
    assert parse_chat_request({"messages": [{"role": "user", "content": "x"}], "stream_options": {
        "include_usage": True}}).options.include_usage is False  # only with stream  # fmt: skip


def test_roles_become_what_templates_take() -> None:
    req = parse_chat_request({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Oslo?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "4 °C"},
        {"role": "tool", "tool_call_id": "c2", "content": "snow"},
    ]})  # fmt: skip
    m = req.messages
    assert [x.role for x in m] == ["system", "user", "assistant", "user"]  # the two results joined
    assert m[1].content == "Weather\nin Oslo?"
    assert json.loads(m[2].content) == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert (
        "get_weather" in m[3].content
        and "4 °C" in m[3].content
        and "c2" in m[3].content
        and "snow" in m[3].content
    )


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": 3}, "frequency_penalty"),
    ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"1": 5}}, "logit_bias"),
])  # fmt: skip
def test_refusals_name_the_parameter(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        parse_chat_request(body)
    assert err.value.param == param


def test_completions() -> None:
    req = parse_completion_request({"prompt": ["Once"], "echo": True, "max_tokens": 3})
    assert (req.prompt, req.echo, req.options.max_tokens) == ("Once", True, 3)
    for bad in (
        {"prompt": 5},
        {"prompt": "x", "suffix": "y"},
        {"prompt": "x", "logprobs": 2},
        {"prompt": "x", "best_of": 3},
    ):
        with pytest.raises(InvalidRequestError):
            parse_completion_request(bad)


def test_tools_are_described_in_the_system_message() -> None:
    tools = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]}).tools
    msgs = with_tools((ChatMessage("system", "Be brief."), ChatMessage("user", "x")), tools, "auto")
    assert (
        msgs[0].content.startswith("Be brief.\n\n")
        and "get_weather" in msgs[0].content
        and "city" in msgs[0].content
    )
    assert with_tools((ChatMessage("user", "x"),), tools, "required")[0].role == "system"


def test_reading_a_call_back() -> None:
    tools = (Tool("get_weather", "", {"type": "object"}),)
    call = read_tool_call('  {"name": "get_weather", "arguments": {"city": "Oslo"}}', tools)
    assert call is not None and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert call.id.startswith("call_") and call.id != read_tool_call('{"name": "get_weather"}', tools).id  # type: ignore[union-attr]
    assert read_tool_call("It is sunny.", tools) is None
    assert read_tool_call('{"name": "get_weather", "argu', tools) is None  # cut short by max_tokens
    assert read_tool_call('{"name": "other", "arguments": {}}', tools) is None


def test_tool_grammars_are_bounded() -> None:
    """Each tool's schema is within the bounds; 128 of them together are not."""
    big = {"type": "object", "properties": {f"property_{i}": {"type": "string"} for i in range(60)}}
    assert len(tool_grammar((Tool("t", "", big),), "auto")) < 16 << 10
    tools = tuple(Tool(f"t{i}", "", big) for i in range(128))
    with pytest.raises(SchemaError, match="tools' grammar"):
        tool_grammar(tools, "auto")

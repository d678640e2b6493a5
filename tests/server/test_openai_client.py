"""The server through the official ``openai`` client, on a real model (issue 18).

Nothing here depends on the model's words: answers are compared with each other (streamed and
whole, the same seed twice), with the request's limits, and with the schemas they must match.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "Name three colours of the rainbow."}]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "languages": {
            "type": "array",
            "items": {"type": "string", "maxLength": 20},
            "minItems": 1,
            "maxItems": 3,
        },
        "employed": {"type": "boolean"},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 40}},
            "required": ["zone"],
        },
    },
}


def test_models_lists_the_served_model(client: Any, server: Any) -> None:
    ids = [m.id for m in client.models.list().data]
    assert ids == [server.served.model_id]
    assert client.models.retrieve(ids[0]).id == ids[0]
    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.models.retrieve("gpt-4o")


def test_chat_whole_and_streamed_answers_are_the_same(client: Any) -> None:
    whole = client.chat.completions.create(model="any", messages=ASK, temperature=0, max_tokens=24)
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert whole.usage.prompt_tokens > 5 and 0 < whole.usage.completion_tokens <= 24
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

    stream = client.chat.completions.create(model="any", messages=ASK, temperature=0, max_tokens=24, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == choice.message.content  # greedy: the same tokens either way
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_the_same_seed_gives_the_same_answer_and_max_tokens_holds(client: Any) -> None:
    def ask(seed: int) -> Any:
        return client.chat.completions.create(model="any", messages=ASK, temperature=1.0, top_p=0.95, seed=seed,
                                              max_tokens=6)  # fmt: skip

    a, b, c = ask(7), ask(7), ask(8)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens <= 6 and c.usage.completion_tokens <= 6
    assert a.choices[0].finish_reason == "length" or a.usage.completion_tokens < 6


def test_stop_strings_end_the_answer(client: Any) -> None:
    out = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6"}],
                                         temperature=0, max_tokens=40, stop=[",", "\n"])  # fmt: skip
    assert "," not in out.choices[0].message.content and "\n" not in out.choices[0].message.content
    assert out.choices[0].finish_reason == "stop"


def test_a_follow_up_reuses_the_conversations_prefix(client: Any) -> None:
    first = client.chat.completions.create(model="any", messages=ASK, temperature=0, max_tokens=8)
    turn = [*ASK, {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And two more?"}]  # fmt: skip
    second = client.chat.completions.create(model="any", messages=turn, temperature=0, max_tokens=8)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 2  # the first turn's prompt stayed in the KV cache
    assert cached < second.usage.prompt_tokens


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_answers_parse_and_match(client: Any, seed: int) -> None:
    out = client.chat.completions.create(
        model="any", temperature=0.8, seed=seed, max_tokens=200,
        messages=[{"role": "user", "content": "Describe a software engineer as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )  # fmt: skip
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)


def test_json_object_mode_streams_an_object(client: Any) -> None:
    stream = client.chat.completions.create(
        model="any", temperature=0.7, seed=4, max_tokens=200, stream=True, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with a city and its country."}],
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_forced_tool_calls_are_valid_calls(client: Any, choice: Any) -> None:
    out = client.chat.completions.create(
        model="any", temperature=0.7, seed=3, max_tokens=120, tools=[WEATHER, TIME], tool_choice=choice,
        messages=[{"role": "user", "content": "What's the weather like in Lisbon?"}],
    )  # fmt: skip
    msg = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls" and msg.content is None
    (call,) = msg.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    tools = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}
    if isinstance(choice, dict):
        assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments), tools[call.function.name])


def test_auto_tool_choice_streams_a_call_or_text_and_takes_the_result_back(client: Any) -> None:
    """Under "auto" an answer is a valid call or text that does not start like one. A 135M model
    rarely decides to call on its own; one earlier call in the conversation (a history such as
    clients send) makes it likely, so a few seeds must give at least one call."""
    shot = [{"role": "user", "content": "What's the weather in Rome, in celsius?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": json.dumps({"city": "Rome", "unit": "celsius"})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
            {"role": "assistant", "content": "It is 21 °C in Rome."},
            {"role": "user", "content": "What's the weather in Oslo, in celsius?"}]  # fmt: skip
    found = []
    for seed in range(8):
        chunks = list(client.chat.completions.create(model="any", temperature=0.7, seed=seed, max_tokens=80,
                                                     tools=[WEATHER], messages=shot, stream=True))  # fmt: skip
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
        if calls:
            assert finish == "tool_calls" and not text and len(calls) == 1
            assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
            jsonschema.validate(json.loads(calls[0].function.arguments), WEATHER["function"]["parameters"])
            found.append(calls[0])
        else:
            assert finish in ("stop", "length") and text and not text.lstrip().startswith("{")
    assert found, "no seed gave a tool call"
    # the conversation goes on with the call and its result, tools now off
    call = found[0]
    turn = [*shot, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 4, "sky": "snow"}'}]  # fmt: skip
    out = client.chat.completions.create(
        model="any", messages=turn, tools=[WEATHER], tool_choice="none", max_tokens=30
    )
    assert out.choices[0].message.content and not out.choices[0].message.tool_calls


def test_text_completions_whole_streamed_and_echoed(client: Any) -> None:
    prompt = "The capital of France is"
    whole = client.completions.create(model="any", prompt=prompt, temperature=0, max_tokens=8)
    assert whole.choices[0].text and whole.usage.completion_tokens <= 8
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="any", prompt=prompt, temperature=0, max_tokens=8, stream=True) if c.choices)  # fmt: skip
    assert streamed == whole.choices[0].text
    echoed = client.completions.create(model="any", prompt=prompt, temperature=0, max_tokens=8, echo=True)
    assert echoed.choices[0].text == prompt + whole.choices[0].text

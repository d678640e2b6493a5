"""Bad requests get a 4xx and OpenAI's error body, never a 500 or a traceback; the door is shut to
what should not come in (issue 18)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from app.server.run import ServerError, check_address
from tests.server.conftest import start_server
from tests.server.raw_http import api_path, post, request

pytestmark = pytest.mark.slow

CHAT = "/chat/completions"
OK_BODY = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


def _error(answer: Any, status: int, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    assert answer.status == status, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/json")
    err = answer.json()["error"]
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    return err


BAD_FIELDS = [
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 3.5}, "temperature"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 2.5}, "max_tokens"),
    ({"stream": "yes"}, "stream"),
    ({"stop": [1, 2]}, "stop"),
    ({"stop": ["x"] * 17}, "stop"),
    ({"seed": "abc"}, "seed"),
    ({"top_p": None, "n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0]"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array", "minItems": 1000000}}}},
     "response_format.json_schema.schema"),
    ({"tools": {"name": "x"}}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"stream_options": 3, "stream": True}, "stream_options"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "param"), BAD_FIELDS)
def test_a_bad_field_is_a_400_that_names_it(server: Any, change: dict[str, Any], param: str) -> None:
    _error(post(server.url, api_path(server.url, CHAT), {**OK_BODY, **change}), 400, param=param)


def test_malformed_and_hostile_bodies_are_400s(server: Any) -> None:
    url, path = server.url, api_path(server.url, CHAT)
    _error(post(url, path, b'{"messages": [}'), 400, code="invalid_json")
    _error(post(url, path, b"\xff\xfe not json"), 400, code="invalid_json")
    _error(
        post(url, path, b"[" * 200_000 + b"]" * 200_000), 400, code="invalid_json"
    )  # deeper than any parser
    _error(post(url, path, b'"just a string"'), 400, param="body")
    _error(post(url, api_path(url, "/completions"), {"prompt": ["a", "b"]}), 400, param="prompt")


def test_oversized_bodies_are_refused_with_and_without_a_length(server: Any) -> None:
    big = json.dumps({**OK_BODY, "messages": [{"role": "user", "content": "x" * (17 << 20)}]}).encode()
    _error(post(server.url, api_path(server.url, CHAT), big), 413, code="request_too_large")
    _error(post(server.url, api_path(server.url, CHAT), big, chunked=True), 413, code="request_too_large")


def test_unknown_routes_and_methods_answer_in_json(server: Any) -> None:
    _error(request(server.url, "GET", "/v1/nothing"), 404)
    _error(request(server.url, "GET", api_path(server.url, CHAT)), 405)


def test_a_prompt_longer_than_the_context_is_a_400(server: Any) -> None:
    long = {**OK_BODY, "messages": [{"role": "user", "content": "word " * 3000}]}  # n_ctx is 2048
    for stream in (False, True):
        _error(post(server.url, api_path(server.url, CHAT), {**long, "stream": stream}), 400,
               param="messages", code="context_length_exceeded")  # fmt: skip
    assert post(server.url, api_path(server.url, CHAT), OK_BODY).status == 200  # and the model is fine


def test_requests_for_another_host_are_refused_on_loopback(server: Any) -> None:
    """DNS rebinding: a web page's hostile name that resolves to 127.0.0.1 reaches the port, but
    its requests say ``Host: evil.example``."""
    _error(request(server.url, "GET", "/v1/models", headers={"host": "evil.example:8080"}), 403)
    assert request(server.url, "GET", "/v1/models", headers={"host": "localhost:1"}).status == 200


def test_no_cors_unless_asked(server: Any) -> None:
    answer = request(server.url, "GET", "/v1/models", headers={"origin": "https://example.com"})
    assert answer.status == 200 and "access-control-allow-origin" not in answer.headers


def test_an_api_key_is_required_and_checked(smollm2_path: Path) -> None:
    running = start_server(smollm2_path, api_key="s3cret-key", cors_origins=("https://notes.example",))
    try:
        url, path = running.url, api_path(running.url, CHAT)
        _error(post(url, path, OK_BODY), 401, code="invalid_api_key")
        _error(
            post(url, path, OK_BODY, headers={"authorization": "Bearer wrong"}), 401, code="invalid_api_key"
        )
        _error(request(url, "GET", "/v1/models", headers={"authorization": "Bearer s3cret-ke"}), 401)
        assert post(url, path, OK_BODY, headers={"authorization": "Bearer s3cret-key"}).status == 200
        assert request(url, "GET", "/v1/models", headers={"x-api-key": "s3cret-key"}).status == 200
        assert request(url, "GET", "/health").status == 200  # the health check is open
        pre = request(url, "OPTIONS", path, headers={"origin": "https://notes.example",
                                                     "access-control-request-method": "POST"})  # fmt: skip
        assert pre.status == 200 and pre.headers["access-control-allow-origin"] == "https://notes.example"
        log = " ".join(repr(r) for r in running.stats.recent())
        assert "s3cret" not in log and any(r.status == 401 for r in running.stats.recent())
    finally:
        running.stop()


def test_public_addresses_need_a_key_and_a_busy_port_is_named() -> None:
    with pytest.raises(ServerError, match="API key"):
        check_address("0.0.0.0", None)
    check_address("0.0.0.0", "k")
    check_address("127.0.0.1", None)
    check_address("::1", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        from app.server.run import bind

        with pytest.raises(ServerError, match="in use") as busy:
            bind("127.0.0.1", taken.getsockname()[1])
        assert "--port" in busy.value.user_message()

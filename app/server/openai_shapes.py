"""The JSON the server answers with, in OpenAI's shapes: completions, stream chunks, usage, errors."""

from __future__ import annotations

import secrets
import time
from typing import Any

from app.engine import protocol as P

# llama.cpp's stop reasons → OpenAI's finish_reason
FINISH = {"eos": "stop", "stop_string": "stop", "max_tokens": "length", "context_full": "length"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(done: P.Done | None) -> dict[str, Any]:
    """Token counts; ``cached_tokens``: the prompt's start that was in the KV cache already (the
    previous request's prefix), so only the rest was evaluated."""
    prompt = (done.n_prompt_tokens or 0) if done is not None else 0
    completion = done.n_gen_tokens if done is not None else 0
    cached = max(0, prompt - done.n_prompt_evaluated) if done is not None else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def tool_call_json(call: Any, *, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        out["index"] = index
    return out


def chat_completion(cid: str, model: str, created: int, content: str | None, finish: str,
                    done: P.Done | None, tool_calls: list[Any] | None = None) -> dict[str, Any]:  # fmt: skip
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [tool_call_json(c) for c in tool_calls]
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage(done)}  # fmt: skip


def chat_chunk(
    cid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}  # fmt: skip


def usage_chunk(cid: str, model: str, created: int, done: P.Done | None, *, obj: str) -> dict[str, Any]:
    return {"id": cid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage(done)}


def text_completion(cid: str, model: str, created: int, text: str, finish: str | None,
                    done: P.Done | None, *, with_usage: bool = True) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"id": cid, "object": "text_completion", "created": created, "model": model,
                           "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}  # fmt: skip
    if with_usage:
        out["usage"] = usage(done)
    return out


def models_list(model_id: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model_id, "object": "model", "created": created, "owned_by": "tailorlm"}],
    }


def now() -> int:
    return int(time.time())

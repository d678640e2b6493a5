"""``POST /v1/chat/completions`` and ``POST /v1/completions``: a checked request becomes one engine
request in the queue; its events become OpenAI's answer, whole or as server-sent events.

A streamed answer starts only once its first event is in: a request that fails before writing
anything (a prompt longer than the context, a model process that died, a full queue) still gets
its 4xx/5xx status and an OpenAI error body. Later failures arrive as a last ``data: {"error": …}``
event, as llama-server sends them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from app.core.chat.json_grammar import SchemaError, any_json_object_grammar, schema_grammar
from app.core.chat.openai_request import ChatRequest, Options, parse_chat_request, parse_completion_request
from app.core.chat.tool_calls import read_tool_call, tool_grammar, with_tools
from app.core.errors import InvalidRequestError
from app.engine import protocol as P
from app.server import openai_shapes as S
from app.server.errors import error_response, read_json
from app.server.exchange import Exchange
from app.server.served_model import ServedModel

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sampling_for(options: Options, *, grammar: str = "", max_tokens: int) -> P.Sampling:
    """The chat's sampling with what the request set (OpenAI's names)."""
    base = P.Sampling()
    return P.Sampling(
        temperature=base.temperature if options.temperature is None else options.temperature,
        top_k=base.top_k, top_p=base.top_p if options.top_p is None else options.top_p, min_p=base.min_p,
        repeat_penalty=base.repeat_penalty, repeat_last_n=base.repeat_last_n,
        frequency_penalty=options.frequency_penalty, presence_penalty=options.presence_penalty,
        seed=-1 if options.seed is None else options.seed % (1 << 32), max_tokens=options.max_tokens or max_tokens,
        stop=options.stop, grammar=grammar,
    )  # fmt: skip


def _grammar(req: ChatRequest) -> str:
    try:
        if req.response_format.kind == "json_object":
            return any_json_object_grammar().text
        if req.response_format.kind == "json_schema":
            return schema_grammar(req.response_format.schema or {}).text
        if req.tools_active:
            return tool_grammar(req.tools, req.tool_choice)
    except SchemaError as err:
        param = "tools" if req.tools_active else "response_format.json_schema.schema"
        raise InvalidRequestError(str(err), param=param, code="invalid_schema") from None
    return ""


async def chat_completions(request: Request) -> Response:
    served: ServedModel = request.app.state.served
    req = parse_chat_request(await read_json(request))
    grammar = _grammar(req)
    messages = with_tools(req.messages, req.tools, req.tool_choice) if req.tools_active else req.messages
    rows = [{"role": m.role, "content": m.content} for m in messages]

    def prompt(model: ServedModel, rid: int) -> tuple[str, P.Sampling]:
        sampling = sampling_for(req.options, grammar=grammar, max_tokens=model.n_ctx())
        return model.render(rows, rid), model.chat_sampling(sampling)

    ex = Exchange(served, request)
    ex.submit(lambda model: prompt(model, ex.request_id))
    first = await ex.next()
    if first is None or isinstance(first, BaseException):
        return _failed(ex, first)
    answer = _ChatAnswer(req, S.new_id("chatcmpl"), served.model_id)
    if not req.options.stream:
        return await _whole(ex, first, answer.whole)
    ex.stop_watching()
    stream = _stream(ex, first, answer.chunks, answer.cid, answer.created, include_usage=req.options.include_usage,
                     role_chunk=S.chat_chunk(answer.cid, answer.model_id, answer.created, {"role": "assistant", "content": ""}))  # fmt: skip
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


async def completions(request: Request) -> Response:
    served: ServedModel = request.app.state.served
    req = parse_completion_request(await read_json(request))
    ex = Exchange(served, request)
    ex.submit(lambda model: (req.prompt, sampling_for(req.options, max_tokens=model.n_ctx())))
    first = await ex.next()
    if first is None or isinstance(first, BaseException):
        return _failed(ex, first)
    cid, model_id, created = S.new_id("cmpl"), served.model_id, S.now()
    prefix = req.prompt if req.echo else ""

    def whole(text: str, done: P.Done | None) -> dict[str, Any]:
        finish = S.FINISH.get(done.stop_reason, "stop") if done is not None else None
        return S.text_completion(cid, model_id, created, prefix + text, finish, done)

    echoed = [not prefix]

    def chunks(piece: str | None, done: P.Done | None) -> list[dict[str, Any]]:
        out = []
        if not echoed[0]:  # echo: the prompt goes first
            echoed[0] = True
            out.append(S.text_completion(cid, model_id, created, prefix, None, None, with_usage=False))
        if piece:
            out.append(S.text_completion(cid, model_id, created, piece, None, None, with_usage=False))
        if done is not None:
            finish = S.FINISH.get(done.stop_reason, "stop")
            out.append(S.text_completion(cid, model_id, created, "", finish, None, with_usage=False))
        return out

    if not req.options.stream:
        return await _whole(ex, first, whole)
    ex.stop_watching()
    stream = _stream(
        ex, first, chunks, cid, created, include_usage=req.options.include_usage, obj="text_completion"
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@dataclass
class _ChatAnswer:
    """Turns a chat answer's text into OpenAI's message: content, or a tool call when tools are on.
    Streamed with tools on, text is held back until it is clear whether the answer is a call (it
    starts with ``{``); a call is sent whole, as one delta, once it is complete."""

    req: ChatRequest
    cid: str
    model_id: str
    created: int = 0
    _text: str = ""
    _mode: str = ""  # "" undecided, "text", "call"

    def __post_init__(self) -> None:
        self.created = S.now()

    def whole(self, text: str, done: P.Done | None) -> dict[str, Any]:
        text = text.lstrip()
        finish = S.FINISH.get(done.stop_reason, "stop") if done is not None else "stop"
        call = read_tool_call(text, self.req.tools) if self.req.tools_active else None
        if call is not None:
            return S.chat_completion(self.cid, self.model_id, self.created, None, "tool_calls", done, [call])
        return S.chat_completion(self.cid, self.model_id, self.created, text, finish, done)

    def chunks(self, piece: str | None, done: P.Done | None) -> list[dict[str, Any]]:
        c = self.cid, self.model_id, self.created
        out = []
        if piece is not None:
            if not self._mode:
                self._text += piece
                lead = self._text.lstrip()
                if lead:
                    self._mode = "call" if self.req.tools_active and lead.startswith("{") else "text"
                    piece, self._text = (lead, lead) if self._mode == "text" else ("", lead)
                else:
                    piece = ""
            elif self._mode == "call":
                self._text += piece
            if self._mode == "text" and piece:
                out.append(S.chat_chunk(*c, {"content": piece}))
        if done is not None:
            call = read_tool_call(self._text, self.req.tools) if self._mode == "call" else None
            if call is not None:
                out.append(S.chat_chunk(*c, {"tool_calls": [S.tool_call_json(call, index=0)]}))
                out.append(S.chat_chunk(*c, {}, "tool_calls"))
            else:
                if self._mode == "call" and self._text:  # cut short: the text as it is
                    out.append(S.chat_chunk(*c, {"content": self._text}))
                out.append(S.chat_chunk(*c, {}, S.FINISH.get(done.stop_reason, "stop")))
        return out


def _outcome(done: P.Done | None) -> str:
    return S.FINISH.get(done.stop_reason, done.stop_reason) if done is not None else ""


async def _whole(
    ex: Exchange, first: object, build: Callable[[str, P.Done | None], dict[str, Any]]
) -> Response:
    """Collect the answer; the client leaving cancels it (the response then goes nowhere)."""
    parts: list[str] = []
    event: object | None = first
    while True:
        if event is None or isinstance(event, BaseException):
            return _failed(ex, event)
        if isinstance(event, P.TokenChunk):
            parts.append(event.text)
        elif isinstance(event, P.Done):
            if event.stop_reason == "cancelled":
                return _failed(ex, None)
            ex.note(event, _outcome(event))
            return JSONResponse(build("".join(parts), event))
        event = await ex.next()


async def _stream(ex: Exchange, first: object, chunks: Callable[[str | None, P.Done | None], list[dict[str, Any]]],
                  cid: str, created: int, *, include_usage: bool, role_chunk: dict[str, Any] | None = None,
                  obj: str = "chat.completion.chunk") -> AsyncIterator[str]:  # fmt: skip
    done: P.Done | None = None
    try:
        if role_chunk is not None:
            yield _sse(role_chunk)
        event: object | None = first
        while event is not None:
            if isinstance(event, BaseException):
                status, body = error_response(event)
                yield _sse(body)
                ex.note(None, f"error {status}")
                break
            if isinstance(event, P.TokenChunk):
                for c in chunks(event.text, None):
                    yield _sse(c)
            elif isinstance(event, P.Done):
                done = event
                if done.stop_reason == "cancelled":  # the server is stopping
                    break
                for c in chunks(None, done):
                    yield _sse(c)
                if include_usage:
                    yield _sse(S.usage_chunk(cid, ex.served.model_id, created, done, obj=obj))
                ex.note(done, _outcome(done))
                break
            event = await ex.next()
        yield "data: [DONE]\n\n"
    finally:
        if not ex.finished:  # the client left mid-stream (Starlette cancelled us): stop the model
            ex.cancel()
            ex.note(done, "cancelled (client left)")


def _sse(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _failed(ex: Exchange, event: object | None) -> Response:
    if event is None:  # the client left: nobody reads this answer
        ex.note(None, "cancelled (client left)")
        return Response(status_code=499)
    status, body = error_response(event)  # type: ignore[arg-type]
    ex.note(None, f"error {status}")
    return JSONResponse(body, status_code=status, headers=_retry_after(status))


def _retry_after(status: int) -> dict[str, str]:
    return {"retry-after": "1"} if status == 503 else {}

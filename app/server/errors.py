"""Every failure as an HTTP status and OpenAI's error body — never a traceback.

Bad input is the client's (4xx, the parameter named); a full queue or a model process that died is
the server's for now (503 with ``Retry-After``: trying again works); anything else is a 500 whose
message says what failed, without internals.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from app.core.errors import ContextOverflowError, EngineError, InvalidRequestError, TailorError, TemplateError
from app.engine.errors import LoadFailed
from app.server.openai_shapes import error_body
from app.server.served_model import ModelGone, QueueFull

MAX_BODY_BYTES = 16 << 20  # a million-token context is ~4 MB of text; more is not a chat request


class BodyTooLarge(InvalidRequestError):
    """The body grew past the limit while it was read (sent without a Content-Length)."""


async def read_json(request: Request, *, limit: int | None = None) -> Any:
    """The request's JSON body, read up to ``limit`` bytes; InvalidRequestError when it is not JSON."""
    limit = request.app.state.max_body_bytes if limit is None else limit
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than {limit:,} bytes.", code="request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser goes
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidRequestError(
            f"The request body is not valid JSON{where}.", code="invalid_json"
        ) from None


def error_response(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, body) for ``exc``."""
    if isinstance(exc, BodyTooLarge):
        return 413, error_body(str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, InvalidRequestError):
        return 400, error_body(str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, ContextOverflowError):
        return 400, error_body(
            f"{exc} {exc.hint or ''}".strip(), param="messages", code="context_length_exceeded"
        )
    if isinstance(exc, QueueFull):
        return 503, error_body(f"The server is busy: {exc}", kind="server_error", code="queue_full")
    if isinstance(exc, ModelGone | LoadFailed):
        return 503, error_body(exc.user_message(), kind="server_error", code="model_unavailable")
    if isinstance(exc, TemplateError):
        return 500, error_body(f"The model's chat template failed: {exc.cause}.", kind="server_error",
                               code="template_error")  # fmt: skip
    if isinstance(exc, EngineError | TailorError):
        return 500, error_body(exc.user_message(), kind="server_error")
    return 500, error_body(f"The server failed: {exc.__class__.__name__}.", kind="server_error")

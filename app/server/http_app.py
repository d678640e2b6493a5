"""The ASGI application: OpenAI's routes over a :class:`ServedModel`, behind the :class:`Guard`.

Starlette routes and parses HTTP (nothing here reads a socket); every error handler answers in
OpenAI's error shape, so a client library raises its own, readable error instead of choking on
HTML or a traceback.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.core.errors import TailorError
from app.server import openai_shapes as S
from app.server.completions import chat_completions, completions
from app.server.errors import MAX_BODY_BYTES, error_response
from app.server.guard import Guard
from app.server.served_model import ServedModel
from app.server.stats import ServerStats


async def models(request: Request) -> Response:
    served: ServedModel = request.app.state.served
    return JSONResponse(S.models_list(served.model_id, served.created))


async def model(request: Request) -> Response:
    """``GET /v1/models/{id}``: the served model by its id (any other id is a 404, as OpenAI's)."""
    served: ServedModel = request.app.state.served
    if request.path_params["model_id"] != served.model_id:
        raise HTTPException(
            404, detail=f"The model '{request.path_params['model_id'][:200]}' is not served here."
        )
    return JSONResponse(S.models_list(served.model_id, served.created)["data"][0])


async def health(request: Request) -> Response:
    served: ServedModel = request.app.state.served
    return JSONResponse({"status": "ok", "model": served.model_id, "waiting": served.waiting})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and exc.detail and request.url.path.startswith("/v1/models/"):
        message = str(exc.detail)
    elif exc.status_code == 404:
        message = f"No such endpoint: {request.method} {request.url.path}. This server has /v1/models, /v1/chat/completions and /v1/completions."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    else:
        message = str(exc.detail)
    return JSONResponse(S.error_body(message, code=str(exc.status_code)), status_code=exc.status_code,
                        headers=exc.headers)  # fmt: skip


async def _app_error(request: Request, exc: Exception) -> Response:
    status, body = error_response(exc)
    return JSONResponse(body, status_code=status, headers={"retry-after": "1"} if status == 503 else None)


def create_app(served: ServedModel, *, stats: ServerStats, api_key: str | None = None, loopback_only: bool = True,
               cors_origins: tuple[str, ...] = (), max_body_bytes: int = MAX_BODY_BYTES) -> Any:  # fmt: skip
    """The server's ASGI app. ``loopback_only``: answer only requests addressed to localhost (the
    server is bound to a loopback address); ``cors_origins``: web pages allowed to call it (none by
    default; "*" for any)."""
    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", model, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    middleware = [Middleware(Guard, stats=stats, api_key=api_key, loopback_only=loopback_only,  # type: ignore[arg-type]
                             max_body_bytes=max_body_bytes)]  # fmt: skip
    if cors_origins:  # outermost: a browser's preflight carries no key
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=list(cors_origins),  # type: ignore[arg-type]
                                        allow_methods=["GET", "POST"], allow_headers=["authorization", "content-type"]))  # fmt: skip
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, TailorError: _app_error, Exception: _app_error})  # fmt: skip
    app.state.served = served
    app.state.max_body_bytes = max_body_bytes
    return app

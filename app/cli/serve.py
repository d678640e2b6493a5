"""``tailorlm serve``: the chosen model as a local OpenAI-compatible server.

The plan is chat's (:func:`app.cli.chat.chat_plan`: the advisor's by default, the same overrides and
refusals), so the speed and memory the advisor promised hold for the server's clients too. Without
a MODEL it serves the model of the most recent chat.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.chat import add_plan_flags, chat_plan, open_store
from app.core.errors import TailorError


def _recent_model() -> str:
    with open_store() as store:
        for conv in store.list_conversations(limit=20):
            if conv.model and Path(conv.model).is_file():
                return str(conv.model)
    raise TailorError("No model to serve: none was named and no chat has one.",
                      hint="Name one: tailorlm serve MODEL.gguf (or a library id from `tailorlm list`).")  # fmt: skip


def cmd_serve(args: argparse.Namespace) -> int:
    from app.engine import protocol as P
    from app.server.run import API_KEY_ENV, bind, check_address, make_server, url_of
    from app.server.served_model import ServedModel
    from app.server.stats import ServerStats

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_address(args.host, api_key)  # before the model loads: a refusal costs nothing
    if args.model is None:
        args.model = _recent_model()
    planned = chat_plan(args)
    sock = bind(args.host, args.port)  # a port in use fails now, not after the load
    served = ServedModel(P.Load.from_plan(planned, n_threads=args.threads or 0), max_waiting=args.queue)
    try:
        loaded = served.start(
            on_progress=lambda f: print(f"\rloading: {f:4.0%}", end="", file=sys.stderr, flush=True)
        )
        print(file=sys.stderr)
        url = url_of(sock)
        key_note = "an API key is required" if api_key else "no API key (local clients only)"
        print(f"Serving {served.model_id} at {url} — {loaded.n_ctx:,}-token context, {planned.settings.n_gpu_layers} "
              f"GPU layers, {key_note}. Ctrl+C stops.", flush=True)  # fmt: skip
        server = make_server(
            served, sock, stats=ServerStats(), api_key=api_key, cors_origins=tuple(args.cors or ())
        )
        # Ctrl+C: uvicorn ends the open requests, then raises it again; the way to stop, not a failure
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        print("Stopped serving.", file=sys.stderr)
    finally:
        served.close()
    return 0


def add_parsers(sub: Any) -> None:
    from app.server.defaults import API_KEY_ENV, DEFAULT_HOST, DEFAULT_PORT
    from app.server.served_model import DEFAULT_MAX_WAITING

    p = sub.add_parser("serve", help="serve a model to other programs through an OpenAI-compatible API")
    p.add_argument(
        "model", nargs="?", help="a .gguf file or a library id (default: the model of the latest chat)"
    )
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}; any other needs an API key)")  # fmt: skip
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free one)"
    )
    p.add_argument(
        "--api-key", metavar="KEY", help=f"require this key (or set {API_KEY_ENV}, which stays out of `ps`)"
    )
    p.add_argument("--queue", type=int, default=DEFAULT_MAX_WAITING, metavar="N",
                   help=f"requests that may wait for the model; more get 503 (default {DEFAULT_MAX_WAITING})")  # fmt: skip
    p.add_argument("--cors", action="append", metavar="ORIGIN",
                   help="let web pages from ORIGIN call the server (repeatable; * for any). Off by default")  # fmt: skip
    add_plan_flags(p)
    p.set_defaults(func=cmd_serve)

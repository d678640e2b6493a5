"""The ``tailorlm`` parser and dispatch: each command group adds its own sub-parsers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app import __version__
from app.core.errors import TailorError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from app.cli import advise, build, chat, hub, quality, serve

    parser = argparse.ArgumentParser(
        prog="tailorlm",
        description="Which language model, at which quantization, fits this machine.",
    )
    parser.add_argument("--version", action="version", version=f"tailorlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    advise.add_parsers(sub)
    chat.add_parsers(sub)
    hub.add_parsers(sub)
    build.add_parsers(sub)
    quality.add_parsers(sub)
    serve.add_parsers(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from app.core.logs import setup_logging

    setup_logging()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except TailorError as err:
        print(f"tailorlm: {err.user_message()}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        from app.core.hub.online import as_network_error

        network = as_network_error(exc)  # a network failure no caller put into words: say it anyway
        if network is None:
            raise
        print(f"tailorlm: {network.user_message()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tailorlm: interrupted", file=sys.stderr)
        return 130

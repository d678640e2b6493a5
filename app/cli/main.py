"""The ``tailorlm`` parser and dispatch: each command group adds its own sub-parsers."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from app import __version__
from app.core.errors import TailorError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    from app.cli import advise, bench, build, chat, hub, profiles, quality, serve, worker

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
    profiles.add_parsers(sub)
    bench.add_parsers(sub)
    worker.add_parsers(sub)
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
    except BrokenPipeError as exc:
        if not _stdout_gone():
            return _network_or_raise(exc)
        # `tailorlm … | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except Exception as exc:
        return _network_or_raise(exc)
    except KeyboardInterrupt:
        print("tailorlm: interrupted", file=sys.stderr)
        return 130


def _stdout_gone() -> bool:
    """Whether the reader of our standard output has closed it (the pipe reports an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _network_or_raise(exc: Exception) -> int:
    from app.core.hub.online import as_network_error

    network = as_network_error(exc)  # a network failure no caller put into words: say it anyway
    if network is None:
        raise exc
    print(f"tailorlm: {network.user_message()}", file=sys.stderr)
    return EXIT_USAGE

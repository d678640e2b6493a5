"""Logging to the platformdirs log folder, rotated, and crash reports a user can send.

``setup_logging()`` writes ``tailorlm.log`` (1 MB × 5 files) and installs hooks for uncaught
exceptions — in the main thread and in worker threads — that write ``crash-<time>.txt`` with the
traceback, versions and platform; ``on_crash`` (the GUI's) is told the report's path so the user
learns where it is. Tokens and other secrets never reach the log: see ``_Redact``.
"""

from __future__ import annotations

import logging
import logging.handlers
import platform
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from app.core import paths

LOG_FILE = "tailorlm.log"
_SECRET = re.compile(r"\b(hf_[A-Za-z0-9]{6,}|Bearer\s+\S+)")


class _Redact(logging.Filter):
    """Blank out Hugging Face tokens and bearer headers, wherever a message came from."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if _SECRET.search(msg):
            record.msg, record.args = _SECRET.sub("[redacted]", msg), None
        return True


def setup_logging(*, level: int = logging.INFO, on_crash: Callable[[Path], None] | None = None) -> Path:
    """Log to the rotating file and install the crash hooks; returns the log file's path."""
    log_path = paths.log_dir() / LOG_FILE
    root = logging.getLogger()
    if not any(getattr(h, "_tailorlm", False) for h in root.handlers):
        handler = logging.handlers.RotatingFileHandler(
            log_path, maxBytes=1_000_000, backupCount=5, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_Redact())
        handler._tailorlm = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(min(root.level or level, level))

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        report = write_crash_report(exc, tb)
        logging.getLogger("tailorlm").error("uncaught %s; report at %s", kind.__name__, report)
        if on_crash is not None:
            on_crash(report)
        else:
            sys.stderr.write(f"TailorLM hit an unexpected error; a report was written to {report}\n")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
    return log_path


def write_crash_report(exc: BaseException, tb: TracebackType | None = None) -> Path:
    """``crash-<time>.txt`` in the log folder: what happened, where, on what; returns its path."""
    from app import __version__

    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 0
    while True:  # exclusive create: a second report in the same second gets its own name
        path = paths.log_dir() / (f"crash-{stamp}.txt" if n == 0 else f"crash-{stamp}-{n}.txt")
        try:
            with path.open("x", encoding="utf-8"):
                break
        except FileExistsError:
            n += 1
    lines = [
        f"TailorLM {__version__} crash report, {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"Python {sys.version.split()[0]} on {platform.platform()} ({platform.machine()})",
        "",
        *traceback.format_exception(type(exc), exc, tb or exc.__traceback__),
    ]
    path.write_text(
        _SECRET.sub("[redacted]", "\n".join(line.rstrip("\n") for line in lines)) + "\n", encoding="utf-8"
    )
    return path

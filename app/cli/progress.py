"""Long work from a terminal: one progress line on stderr, and Ctrl+C as a cancel.

Every long core or engine call (download, conversion, quantization, scoring) takes
``on_progress`` and a ``threading.Event`` to cancel; :func:`long_work` provides both, so each
command shows progress and stops cleanly the same way.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from app.core.errors import Cancelled

REDRAW_S = 0.2  # at most five redraws a second: a terminal is not a video


class ProgressLine:
    """``render(p) -> (stage, fraction, text)``; a new stage starts a new line."""

    def __init__(self, render: Callable[[Any], tuple[str, float, str]], *, enabled: bool) -> None:
        self.render, self.enabled = render, enabled
        self.last, self.stage, self.drawn = 0.0, "", False

    def __call__(self, p: Any) -> None:
        if not self.enabled:
            return
        stage, fraction, text = self.render(p)
        now = time.monotonic()
        if now - self.last < REDRAW_S and stage == self.stage and fraction < 1:
            return
        if stage != self.stage and self.drawn:
            sys.stderr.write("\n")
        self.last, self.stage, self.drawn = now, stage, True
        sys.stderr.write(f"\r{text}")
        sys.stderr.flush()

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


@contextlib.contextmanager
def long_work(
    render: Callable[[Any], tuple[str, float, str]], *, show: bool, stopped: str
) -> Iterator[tuple[ProgressLine, threading.Event]]:
    """``(on_progress, cancel)`` for one long call; Ctrl+C sets ``cancel`` and raises
    ``Cancelled(stopped)`` once the call has returned or raised."""
    line = ProgressLine(render, enabled=show)
    cancel = threading.Event()
    try:
        yield line, cancel
    except KeyboardInterrupt:
        cancel.set()
        raise Cancelled(stopped) from None
    finally:
        line.end()


@contextlib.contextmanager
def ctrl_c_calls(action: Callable[[], None]) -> Iterator[None]:
    """While inside: Ctrl+C calls ``action`` (cancel this request) instead of raising
    KeyboardInterrupt in the middle of the work, so it ends the normal way and says how it ended.
    A second Ctrl+C does the same; the main thread only (where Python delivers signals)."""
    old = signal.signal(signal.SIGINT, lambda signum, frame: action())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def on_terminal(as_json: bool) -> bool:
    """Progress is drawn for people at a terminal, never into ``--json`` output."""
    return not as_json and sys.stderr.isatty()

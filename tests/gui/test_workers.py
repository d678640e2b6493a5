"""The one background-work primitive: functions and generators off the GUI thread, their results on
it, cancel between yields, latest-wins, owners, serial lanes, and the checks that fail a test which
leaves work running or whose worker hit an unexpected error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QObject, QThread, QThreadPool, QTimer
from pytestqt.qtbot import QtBot

from app.core.errors import Cancelled, ModelNotFoundError
from app.gui import workers
from app.gui.workers import Lane, start_worker, wait_for_workers
from tests.gui.leaks import LeakWatch

WAIT_MS = 10_000


class Record:
    """Every callback of one worker, in order, with the thread it ran on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.threads: set[int] = set()

    def callbacks(self) -> dict[str, Any]:
        def note(kind: str) -> Any:
            def cb(*args: Any) -> None:
                self.threads.add(threading.get_ident())
                self.events.append((kind, args[0] if len(args) == 1 else args))

            return cb

        return {f"on_{k}": note(k) for k in ("start", "yield", "return", "error", "finish")}

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]

    def values(self, kind: str) -> list[Any]:
        return [v for k, v in self.events if k == kind]


def test_a_function_reports_and_returns_on_the_gui_thread(qtbot: QtBot) -> None:
    rec, ran_on = Record(), []

    def work(report: Any, cancel: threading.Event) -> int:
        ran_on.append(threading.get_ident())
        for i in range(3):
            report(i)
        return 42

    start_worker(work, **rec.callbacks())
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert rec.kinds() == ["start", "yield", "yield", "yield", "return", "finish"]
    assert rec.values("yield") == [0, 1, 2] and rec.values("return") == [42]
    assert rec.threads == {threading.get_ident()} and ran_on != [threading.get_ident()]


def test_each_yield_of_a_generator_arrives_then_its_return_value(qtbot: QtBot) -> None:
    rec = Record()

    def tokens(report: Any, cancel: threading.Event) -> Iterator[str]:
        yield from ("Hel", "lo", "!")
        return "Hello!"  # type: ignore[misc]  # a generator's return value is its result

    start_worker(tokens, **rec.callbacks())
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert rec.values("yield") == ["Hel", "lo", "!"] and rec.values("return") == ["Hello!"]


def test_cancel_ends_a_generator_between_yields(qtbot: QtBot) -> None:
    rec, closed = Record(), threading.Event()

    def forever(report: Any, cancel: threading.Event) -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
                time.sleep(0.005)
        finally:
            closed.set()  # the generator's own clean-up ran

    worker = start_worker(forever, **rec.callbacks())
    qtbot.waitUntil(lambda: len(rec.values("yield")) >= 3, timeout=WAIT_MS)
    worker.cancel()
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert closed.is_set() and "return" not in rec.kinds()
    [(message, _hint, cancelled)] = rec.values("error")
    assert cancelled and message == "Stopped."


def test_a_generator_may_catch_the_cancel_and_wind_down(qtbot: QtBot) -> None:
    rec = Record()

    def answer(report: Any, cancel: threading.Event) -> Iterator[str]:
        try:
            while True:
                yield "token"
                time.sleep(0.005)
        except Cancelled:
            yield "the rest of the stream"  # a chat still reads its Done after sending Cancel
            return "stopped early"  # type: ignore[misc]

    worker = start_worker(answer, **rec.callbacks())
    qtbot.waitUntil(lambda: bool(rec.values("yield")), timeout=WAIT_MS)
    worker.cancel()
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert rec.values("yield")[-1] == "the rest of the stream"
    assert rec.values("return") == ["stopped early"] and not rec.values("error")


def test_a_plain_function_gets_the_token_cancel_sets(qtbot: QtBot) -> None:
    rec = Record()

    def long_call(report: Any, cancel: threading.Event) -> None:
        report("waiting")
        if cancel.wait(WAIT_MS / 1000):
            raise Cancelled("The download was cancelled.")

    worker = start_worker(long_call, **rec.callbacks())
    qtbot.waitUntil(lambda: bool(rec.values("yield")), timeout=WAIT_MS)
    worker.cancel()
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert rec.values("error") == [("The download was cancelled.", "", True)]


def test_a_tailor_error_arrives_as_its_sentence_and_hint(qtbot: QtBot) -> None:
    rec = Record()

    def fail(report: Any, cancel: threading.Event) -> None:
        raise ModelNotFoundError("No model named 'x'.", hint="Pick one from the library.")

    start_worker(fail, **rec.callbacks())
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert rec.values("error") == [("No model named 'x'.", "Pick one from the library.", False)]


def test_the_latest_worker_of_a_key_wins_and_the_older_is_dropped(qtbot: QtBot) -> None:
    owner, other = QObject(), QObject()
    release = threading.Event()
    old, new, elsewhere = Record(), Record(), Record()

    def slow(report: Any, cancel: threading.Event) -> str:
        release.wait(WAIT_MS / 1000)
        report("late progress")
        return "stale"

    first = start_worker(slow, owner=owner, latest="advise", **old.callbacks())
    qtbot.waitUntil(lambda: "start" in old.kinds(), timeout=WAIT_MS)
    start_worker(lambda r, c: "same key, other owner", owner=other, latest="advise", **elsewhere.callbacks())
    start_worker(lambda r, c: "fresh", owner=owner, latest="advise", **new.callbacks())
    assert first.cancel_event.is_set()
    release.set()
    qtbot.waitUntil(lambda: "finish" in new.kinds() and "finish" in elsewhere.kinds(), timeout=WAIT_MS)
    assert wait_for_workers(WAIT_MS)
    qtbot.wait(50)  # the older worker's queued signals would arrive now
    assert old.kinds() == ["start"]  # nothing after it was replaced
    assert new.values("return") == ["fresh"] and elsewhere.values("return") == ["same key, other owner"]


def test_a_destroyed_owner_cancels_its_worker_and_hears_nothing(qtbot: QtBot) -> None:
    owner, rec = QObject(), Record()

    def until_cancelled(report: Any, cancel: threading.Event) -> str:
        cancel.wait(WAIT_MS / 1000)
        report("after the owner went")
        return "nobody to tell"

    worker = start_worker(until_cancelled, owner=owner, **rec.callbacks())
    qtbot.waitUntil(lambda: "start" in rec.kinds(), timeout=WAIT_MS)
    shiboken6.delete(owner)
    assert worker.cancel_event.is_set()
    assert wait_for_workers(WAIT_MS)
    qtbot.wait(50)
    assert rec.kinds() == ["start"]


def test_discarding_a_panels_workers_reaches_the_widgets_inside_it(qtbot: QtBot) -> None:
    panel, other = QObject(), QObject()
    picker = QObject(panel)  # a widget inside the panel that starts work of its own
    inner, outer = Record(), Record()
    inside = start_worker(lambda r, c: c.wait(WAIT_MS / 1000), owner=picker, **inner.callbacks())
    beside = start_worker(lambda r, c: "not the panel's", owner=other, **outer.callbacks())
    qtbot.waitUntil(lambda: "start" in inner.kinds(), timeout=WAIT_MS)
    workers.discard_workers(panel)  # what a panel's shutdown does
    assert inside.cancel_event.is_set() and not beside.cancel_event.is_set()
    assert wait_for_workers(WAIT_MS)
    qtbot.wait(50)
    assert inner.kinds() == ["start"] and outer.values("return") == ["not the panel's"]


def test_a_lane_runs_its_workers_in_order_on_one_thread_of_its_own(qtbot: QtBot) -> None:
    panel = QObject()
    lane = Lane("chat", parent=panel)
    pool = QThreadPool.globalInstance()
    gate = threading.Event()
    busy = [start_worker(lambda r, c: gate.wait(WAIT_MS / 1000)) for _ in range(pool.maxThreadCount())]
    order: list[int] = []
    threads: set[int] = set()
    overlap = threading.Lock()
    results: list[int] = []

    def job(n: int) -> Any:
        def run(report: Any, cancel: threading.Event) -> int:
            assert overlap.acquire(blocking=False), "two jobs of one lane ran at once"
            try:
                order.append(n)
                threads.add(threading.get_ident())
                time.sleep(0.01)
                return n
            finally:
                overlap.release()

        return run

    for n in range(5):
        start_worker(job(n), lane=lane, on_return=results.append)
    # every thread of the shared pool is taken, yet the lane's jobs run and finish
    qtbot.waitUntil(lambda: len(results) == 5, timeout=WAIT_MS)
    assert order == results == [0, 1, 2, 3, 4] and len(threads) == 1
    assert not any(w.ended.is_set() for w in busy)
    gate.set()
    assert wait_for_workers(WAIT_MS)


def test_a_stop_before_the_lane_reaches_a_worker_wins(qtbot: QtBot) -> None:
    panel = QObject()
    lane, gate, ran = Lane("chat", parent=panel), threading.Event(), []
    start_worker(lambda r, c: gate.wait(WAIT_MS / 1000), lane=lane)
    rec = Record()
    queued = start_worker(lambda r, c: ran.append(True), lane=lane, **rec.callbacks())
    queued.cancel()  # pressed while the load before it still runs
    gate.set()
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert not ran and rec.values("error") == [("Stopped.", "", True)]


def test_an_unexpected_error_is_shown_in_one_line_and_fails_the_test(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = LeakWatch(monkeypatch)  # the autouse fixture's own check, watched from inside
    rec = Record()

    def bug(report: Any, cancel: threading.Event) -> None:
        raise ValueError("a bug")

    start_worker(bug, **rec.callbacks())
    start_worker(lambda r, c: (_ for _ in ()).throw(Cancelled("Stopped.")))  # expected: not reported
    qtbot.waitUntil(lambda: "finish" in rec.kinds(), timeout=WAIT_MS)
    assert wait_for_workers(WAIT_MS)
    [(message, hint, cancelled)] = rec.values("error")
    assert message == "Something went wrong: ValueError: a bug" and "log" in hint and not cancelled
    [problem] = watch.problems()
    assert "unexpected error" in problem and "ValueError: a bug" in problem and "Traceback" in problem


def test_the_leak_check_names_a_running_worker_timer_and_thread(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = LeakWatch(monkeypatch)
    owner = QObject()
    worker = start_worker(lambda r, c: c.wait(WAIT_MS / 1000), owner=owner)
    timer = QTimer(owner)
    timer.start(60_000)
    thread = QThread()
    thread.start()
    QTimer.singleShot(60_000, owner, lambda: None)
    problems = watch.problems()
    here = "tests/gui/test_workers.py:"
    assert any(p.startswith("a worker still runs") and str(worker.id) in p for p in problems)
    assert any(p.startswith("a QTimer is still active") and here in p for p in problems)
    assert any(p.startswith("a QThread still runs") and here in p for p in problems)
    assert any(p.startswith("a QTimer.singleShot has not fired") and here in p for p in problems)
    watch.clean_up()
    assert worker.cancel_event.is_set() and worker.ended.is_set()
    assert not timer.isActive() and thread.isFinished()
    shiboken6.delete(owner)  # the single shot goes with its context
    assert watch.problems() == []


def test_shutdown_cancels_every_worker_and_waits(qtbot: QtBot) -> None:
    panel = QObject()
    lane, rec = Lane("chat", parent=panel), Record()
    on_pool = start_worker(lambda r, c: c.wait(WAIT_MS / 1000), **rec.callbacks())
    on_lane = start_worker(lambda r, c: c.wait(WAIT_MS / 1000), lane=lane)
    t0 = time.monotonic()
    assert workers.shutdown_workers(WAIT_MS)
    assert time.monotonic() - t0 < 2  # cancelled, not waited out
    assert on_pool.ended.is_set() and on_lane.ended.is_set()
    qtbot.wait(50)
    assert "return" not in rec.kinds() and "error" not in rec.kinds()  # at quit nobody listens

"""What a test must not leave behind in Qt, watched by an autouse fixture in tests/conftest.py (after
napari's ``dangling_qthreads``/``dangling_qthread_pool``/``dangling_qtimers``): a worker still
running, a thread-pool task still active, a QThread still running, a QTimer (or a pending
``QTimer.singleShot``) still active, and an unexpected exception raised in a worker.

Each start is recorded with where the test's or the app's code called it, so the failure names the
line to fix. After reporting, :meth:`LeakWatch.clean_up` stops what is left so the next test
starts clean.
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP = (str(Path(__file__).resolve()), str(ROOT / "app" / "gui" / "workers.py"))
# A pool's thread is counted active until it has returned from the runnable: give it this long
# once the work itself is over (a running worker is reported at once, without waiting).
POOL_GRACE_MS = 1000


def where() -> str:
    """The innermost frame of ours (app/ or tests/) that started something, and its caller."""
    ours = [f for f in traceback.extract_stack()[:-1]
            if f.filename.startswith(str(ROOT)) and ".venv" not in f.filename and f.filename not in _SKIP]  # fmt: skip
    return " ← ".join(f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}" for f in reversed(ours[-2:])) or "?"


class LeakWatch:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from PySide6.QtCore import QObject, QThread, QThreadPool, QTimer

        from app.gui import workers

        self.threads: WeakKeyDictionary[Any, str] = WeakKeyDictionary()
        self.timers: WeakKeyDictionary[Any, str] = WeakKeyDictionary()
        self.pools: dict[int, tuple[Any, list[str]]] = {}  # pools live long: strong references are fine
        self.workers: dict[int, str] = {}  # worker id → where it was started
        self.single_shots: dict[object, str] = {}
        self.errors: list[tuple[BaseException, str]] = []
        self._lock = threading.Lock()  # the error hook runs on worker threads
        thread_start, pool_start = QThread.start, QThreadPool.start
        timer_start, single_shot = QTimer.start, QTimer.singleShot

        def start_thread(thread: Any, *args: Any) -> None:
            self.threads[thread] = where()
            thread_start(thread, *args)

        def start_in_pool(pool: Any, runnable: Any, *args: Any) -> None:
            worker, place = getattr(runnable, "worker", None), where()
            if worker is not None:
                self.workers[worker.id] = place
            self.pools.setdefault(id(pool), (pool, []))[1].append(f"{worker or runnable} at {place}")
            pool_start(pool, runnable, *args)

        def start_timer(timer: Any, *args: Any) -> None:
            self.timers[timer] = where()
            timer_start(timer, *args)

        def start_single_shot(*args: Any) -> None:
            functor = args[-1]
            if not callable(functor):  # (msec, receiver, b"member"): not ours to follow
                single_shot(*args)
                return
            token = object()
            self.single_shots[token] = where()

            def fire() -> None:
                self.single_shots.pop(token, None)
                functor()

            if len(args) == 3 and isinstance(args[1], QObject):  # Qt drops the call with its context
                args[1].destroyed.connect(lambda *_: self.single_shots.pop(token, None))
            single_shot(*args[:-1], fire)

        def worker_error(exc: BaseException) -> None:
            with self._lock:
                self.errors.append((exc, "".join(traceback.format_exception(exc))))

        monkeypatch.setattr(QThread, "start", start_thread)
        monkeypatch.setattr(QThreadPool, "start", start_in_pool)
        monkeypatch.setattr(QTimer, "start", start_timer)
        monkeypatch.setattr(QTimer, "singleShot", staticmethod(start_single_shot))
        monkeypatch.setattr(workers, "unexpected_error_hook", worker_error)

    def problems(self) -> list[str]:
        """What the test left behind, one paragraph each; empty when it cleaned up after itself."""
        from PySide6.QtCore import QCoreApplication, QEvent

        from app.gui.workers import running_workers

        if QCoreApplication.instance() is not None:  # widgets closed by qtbot are deleted now
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        found = [
            f"a worker still runs: {w}, started at {self.workers.get(w.id, '?')}" for w in running_workers()
        ]
        for pool, started in self._pools():
            if not found and pool.activeThreadCount() and not pool.waitForDone(POOL_GRACE_MS):
                found.append("a thread-pool task is still active; tasks started:\n  " + "\n  ".join(started))
        found += [
            f"a QThread still runs, started at {place}" for t, place in _alive(self.threads, "isRunning")
        ]
        found += [
            f"a QTimer is still active, started at {place}" for t, place in _alive(self.timers, "isActive")
        ]
        found += [
            f"a QTimer.singleShot has not fired yet, set at {place}" for place in self.single_shots.values()
        ]
        with self._lock:
            found += [f"a worker raised an unexpected error:\n{text}" for _, text in self.errors]
        return found

    def clean_up(self) -> None:
        """Stop what is left, so that the next test does not inherit it."""
        from app.gui.workers import shutdown_workers

        for timer, _ in _alive(self.timers, "isActive"):
            timer.stop()
        for thread, _ in _alive(self.threads, "isRunning"):
            thread.quit()
            thread.wait(2000)
        shutdown_workers(10_000)
        for pool, _ in self._pools():
            pool.waitForDone(10_000)

    def _pools(self) -> list[tuple[Any, list[str]]]:
        import shiboken6

        # a deleted pool (a lane whose panel went) waited for its tasks as it went
        return [(pool, started) for pool, started in self.pools.values() if shiboken6.isValid(pool)]


def _alive(objects: WeakKeyDictionary[Any, str], test: str) -> list[tuple[Any, str]]:
    alive = []
    for obj, place in list(objects.items()):
        try:
            if getattr(obj, test)():
                alive.append((obj, place))
        except RuntimeError:  # its C++ object is gone, so it runs no more
            pass
    return alive

"""Run core calls off the GUI thread and hear back through signals.

``run_task(fn, ...)`` runs ``fn(report, cancel)`` on Qt's thread pool: ``report(obj)`` becomes the
``progress`` signal, the return value ``done``, a raised exception ``failed`` with a message in
plain words (a ``TailorError``'s message and hint; anything else is logged with its traceback and
shown as one line). ``Task.cancel()`` sets the ``threading.Event`` the core functions watch.
Signals cross threads as queued connections, so slots always run on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

TaskFn = Callable[[Callable[[Any], None], threading.Event], Any]
POOL_THREADS = 16


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(message, next step) for the window; never a traceback."""
    from app.core.errors import Cancelled, TailorError

    if isinstance(exc, Cancelled):
        return str(exc) or "Stopped.", ""
    if isinstance(exc, TailorError):
        return str(exc), exc.hint or ""
    log.exception("unexpected error in a background task", exc_info=exc)
    return (f"Something went wrong: {exc.__class__.__name__}: {exc}",
            "The details are in the log file (Help → Open log folder).")  # fmt: skip


class Task(QObject):
    progress = Signal(object)
    done = Signal(object)
    failed = Signal(str, str, bool)  # message, hint, cancelled
    finished = Signal()

    def __init__(self, fn: TaskFn, name: str = "") -> None:
        super().__init__()
        self.fn, self.name = fn, name
        self.cancel_event = threading.Event()
        self.running = False

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:  # on a pool thread
        from app.core.errors import Cancelled

        self.running = True
        try:
            try:
                result = self.fn(self.progress.emit, self.cancel_event)
            except BaseException as exc:  # every failure must reach the window
                msg, hint = describe_error(exc)
                self.failed.emit(msg, hint, isinstance(exc, Cancelled) or self.cancel_event.is_set())
            else:
                self.done.emit(result)
            finally:
                self.running = False
                self.finished.emit()
        except RuntimeError:  # the app is quitting and Qt already deleted this object: nobody listens
            pass


def shutdown_tasks(timeout_ms: int = 3000) -> None:
    """At quit: cancel what still runs and give it a moment, so no thread outlives the app."""
    for task in list(_live):
        task.cancel()
    QThreadPool.globalInstance().waitForDone(timeout_ms)


class _Runnable(QRunnable):
    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.setAutoDelete(True)

    def run(self) -> None:
        self.task.run()


_live: set[Task] = set()  # keep Python references until a task ends


class _Delivery(QObject):
    """Lives on the GUI thread: the task's signals reach it queued, so callbacks (lambdas too)
    always run on the GUI thread."""

    def __init__(self, task: Task, on_done: Callable[[Any], None] | None,
                 on_failed: Callable[[str, str, bool], None] | None,
                 on_progress: Callable[[Any], None] | None, owner: QObject | None) -> None:  # fmt: skip
        super().__init__()
        self.cbs: tuple[Any, Any, Any] = (on_done, on_failed, on_progress)
        if owner is not None:  # a panel that is gone gets no late results
            owner.destroyed.connect(self.forget)
        task.done.connect(self.deliver_done)
        task.failed.connect(self.deliver_failed)
        task.progress.connect(self.deliver_progress)
        task.finished.connect(self.deliver_finished)
        self.task = task

    @Slot(object)
    def deliver_done(self, result: Any) -> None:
        if self.cbs[0] is not None:
            self.cbs[0](result)

    @Slot(str, str, bool)
    def deliver_failed(self, message: str, hint: str, cancelled: bool) -> None:
        if self.cbs[1] is not None:
            self.cbs[1](message, hint, cancelled)

    @Slot(object)
    def deliver_progress(self, value: Any) -> None:
        if self.cbs[2] is not None:
            self.cbs[2](value)

    @Slot()
    def deliver_finished(self) -> None:
        _live.discard(self.task)

    @Slot()
    def forget(self) -> None:
        self.cbs = (None, None, None)
        self.task.cancel()


def run_task(
    fn: TaskFn,
    *,
    on_done: Callable[[Any], None] | None = None,
    on_failed: Callable[[str, str, bool], None] | None = None,
    on_progress: Callable[[Any], None] | None = None,
    name: str = "",
    owner: QObject | None = None,
) -> Task:
    """Start ``fn(report, cancel)`` on the thread pool; the callbacks run on the GUI thread.

    Call it from the GUI thread. Keep the returned Task to cancel it. With ``owner`` (a panel),
    the task is cancelled and its callbacks dropped when the owner is destroyed.
    """
    task = Task(fn, name)
    task.delivery = _Delivery(task, on_done, on_failed, on_progress, owner)  # type: ignore[attr-defined]
    _live.add(task)
    pool = QThreadPool.globalInstance()
    # Most tasks wait on disks, networks and child processes, not on the CPU: a download and a
    # conversion must not keep a search or the hardware detection waiting behind them.
    pool.setMaxThreadCount(max(pool.maxThreadCount(), POOL_THREADS))
    pool.start(_Runnable(task))
    return task


def run_for(
    owner: QObject,
    fn: TaskFn,
    *,
    done: Callable[[Any], None],
    failed: Callable[[str, str, bool], None],
    progress: Callable[[Any], None] | None = None,
) -> Task:
    """``run_task`` owned by a panel: cancelled, and its callbacks dropped, when the panel goes."""
    return run_task(fn, on_done=done, on_failed=failed, on_progress=progress, owner=owner)

"""The one way the window runs long work: a function or generator on a worker thread, heard back
through signals on the GUI thread.

``start_worker(fn, ...)`` calls ``fn(report, cancel)`` off the GUI thread. ``report(value)`` and,
when ``fn`` is a generator function, every ``yield`` become ``yielded``; the return value
``returned``; an exception ``errored`` with a sentence for the user and the next step. ``cancel``
is the ``threading.Event`` the core's long calls watch (they raise ``Cancelled``); for a generator
the worker also checks it between yields and throws ``Cancelled`` in at the ``yield`` once, so the
generator may stop there or catch it and wind down (the chat sends its Cancel and still streams the
end of the answer).

Options: ``owner`` (a QObject: when it is destroyed the worker is cancelled and delivers nothing
more), ``latest`` (a key: a newer worker with the same key and owner cancels the older, whose
results are dropped) and ``lane`` (a :class:`Lane`: its workers run one after another in submit
order on a thread of the lane's own, so a minutes-long answer neither holds a thread of the shared
pool nor waits behind another panel's work). ``Worker.cancel()`` asks the work to stop and still
reports how it ended (``errored`` with ``cancelled=True``, so a row can say "Cancelled");
``Worker.discard()`` — what replacing and the owner's end do — also drops everything after it.

Our own rather than superqt's ``thread_worker`` (the model for this one: a generator on the thread
pool, a yield per signal, a quit flag checked between yields): superqt has no owner, no
latest-wins, no serial lane and no cancel token to hand to plain core functions, so it would take
a wrapper as long as this module, plus a dependency.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

WorkFn = Callable[[Callable[[Any], None], threading.Event], Any]
# Most work waits on disks, networks and child processes, not on the CPU: a download and a
# conversion must not keep a search or the hardware detection waiting behind them.
POOL_THREADS = 16
# Set by tests/conftest.py so that an unexpected exception in a worker fails the test that caused
# it; in the app it is logged with its traceback and the window shows one line.
unexpected_error_hook: Callable[[BaseException], None] | None = None

_ids = itertools.count(1)
_live: set[Worker] = set()  # started and not yet heard to finish (GUI thread only)
_latest: dict[tuple[int, str], Worker] = {}  # (id(owner) or 0, key) → the newest worker


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(message, next step) for the window; never a traceback."""
    from app.core.errors import Cancelled, TailorError

    if isinstance(exc, Cancelled):
        return str(exc) or "Stopped.", ""
    if isinstance(exc, TailorError):
        return str(exc), exc.hint or ""
    log.exception("unexpected error in a background task", exc_info=exc)
    from app.core.hub.online import as_network_error

    if (network := as_network_error(exc)) is not None:  # in words, never "ConnectError: [Errno -2]"
        return str(network), network.hint or ""
    return (f"Something went wrong: {exc.__class__.__name__}: {exc}",
            "The details are in the log file (Help → Open log folder).")  # fmt: skip


class Lane:
    """Workers started on a lane run one at a time, in the order they were started, always on the
    same thread (so a sqlite connection or a child process's pipes opened by one job serve the
    next), never on the shared pool.

    The lane's thread goes with ``parent`` (the panel; None: the application), on the GUI thread:
    Qt, not Python's garbage collector — which may run on any thread, the lane's own included —
    owns it. Discard the parent's workers before it goes: its deletion waits for the running job.
    """

    def __init__(self, name: str, *, parent: QObject | None = None) -> None:
        from PySide6.QtCore import QCoreApplication

        self.name = name
        self.pool = QThreadPool(parent if parent is not None else QCoreApplication.instance())
        self.pool.setMaxThreadCount(1)
        self.pool.setExpiryTimeout(-1)  # the thread stays: its jobs may own thread-bound resources


class Worker(QObject):
    """One run of ``fn(report, cancel)``; emitted from the worker thread, delivered queued."""

    # the work began on its thread (it may have waited in the pool or its lane before)
    started = Signal()
    # a value the work reported or yielded: a progress record, a line, a token chunk
    yielded = Signal(object)
    # the work's return value (a generator's ``return`` value); not sent after ``errored``
    returned = Signal(object)
    # (message, next step, cancelled): the work raised; cancelled when it was asked to stop
    errored = Signal(str, str, bool)
    # the last signal, after ``returned`` or ``errored``
    finished = Signal()

    def __init__(self, fn: WorkFn, name: str) -> None:
        super().__init__()
        self.id = next(_ids)  # names this request in logs and in the test fixtures' reports
        self.name = name
        self.cancel_event = threading.Event()
        self.ended = threading.Event()  # set on the worker thread once ``fn`` is over
        # set once the worker thread is done with this object (after its last emit returned): only
        # then may the GUI thread delete it — a QObject deleted while another thread is still
        # inside its emit crashes the event loop (seen as a segfault in a full test run)
        self.released = threading.Event()
        self._fn = fn
        self._delivery: _Delivery | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.id} {self.name!r}{' ended' if self.ended.is_set() else ''}>"

    def cancel(self) -> None:
        """Ask the work to stop; how it ended is still delivered (``errored``, cancelled=True)."""
        self.cancel_event.set()

    def discard(self) -> None:
        """Ask the work to stop and deliver nothing more of it (a replaced or orphaned worker)."""
        self.cancel_event.set()
        if self._delivery is not None:
            self._delivery.drop()

    def run(self) -> None:  # on a pool or lane thread
        from app.core.errors import Cancelled, TailorError

        try:
            self.started.emit()
            try:
                if self.cancel_event.is_set():  # Stop won before the work began
                    raise Cancelled("Stopped.")
                result = self._fn(self.yielded.emit, self.cancel_event)
                if inspect.isgenerator(result):
                    result = self._drain(result)
            except BaseException as exc:  # every failure must reach the window
                if not isinstance(exc, TailorError):
                    _unexpected(exc)
                msg, hint = describe_error(exc)
                self.errored.emit(msg, hint, isinstance(exc, Cancelled) or self.cancel_event.is_set())
            else:
                self.returned.emit(result)
            finally:
                self.ended.set()
                self.finished.emit()
        except RuntimeError:  # the app is quitting and Qt already deleted this object: nobody listens
            self.ended.set()

    def _drain(self, gen: Generator[Any, None, Any]) -> Any:
        from app.core.errors import Cancelled

        thrown = False
        try:
            value = next(gen)
            while True:
                self.yielded.emit(value)
                if self.cancel_event.is_set() and not thrown:
                    thrown = True  # once: a generator that catches it may wind down in peace
                    value = gen.throw(Cancelled("Stopped."))
                else:
                    value = next(gen)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()


def _unexpected(exc: BaseException) -> None:
    hook = unexpected_error_hook
    if hook is not None:
        hook(exc)


class _Runnable(QRunnable):
    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            self.worker.run()
        finally:
            self.worker.released.set()


class _Delivery(QObject):
    """Lives on the GUI thread: the worker's signals reach it queued, so callbacks (lambdas too)
    always run there. Dropped, it forwards nothing, not even what was already queued."""

    def __init__(self, worker: Worker, owner: QObject | None, latest: tuple[int, str] | None,
                 callbacks: tuple[Any, ...]) -> None:  # fmt: skip
        from PySide6.QtCore import QCoreApplication

        # Owned by the application, not by Python's reference count: a worker thread dropping the
        # last reference must not delete an object of the GUI thread; ``_finished`` deletes it.
        super().__init__(QCoreApplication.instance())
        self.worker, self.owner, self.latest, self.cbs = worker, owner, latest, callbacks
        self.dropped = False
        self.links = ((worker.started, self._started), (worker.yielded, self._yielded),
                      (worker.returned, self._returned), (worker.errored, self._errored))  # fmt: skip
        for signal, slot in self.links:
            signal.connect(slot)
        worker.finished.connect(self._finished)
        if owner is not None:
            owner.destroyed.connect(self._owner_gone)

    def drop(self) -> None:
        if self.dropped:
            return
        self.dropped, self.cbs = True, (None,) * 5
        for signal, slot in self.links:  # what is already queued is stopped by ``dropped``
            signal.disconnect(slot)
        self._forget()

    def _forget(self) -> None:
        if self.latest is not None and _latest.get(self.latest) is self.worker:
            del _latest[self.latest]
        if self.owner is not None:
            import shiboken6

            if shiboken6.isValid(self.owner):
                self.owner.destroyed.disconnect(self._owner_gone)
            self.owner = None

    def _call(self, i: int, *args: Any) -> None:
        cb = self.cbs[i]
        if cb is not None and not self.dropped:
            cb(*args)

    @Slot()
    def _started(self) -> None:
        self._call(0)

    @Slot(object)
    def _yielded(self, value: Any) -> None:
        self._call(1, value)

    @Slot(object)
    def _returned(self, result: Any) -> None:
        self._call(2, result)

    @Slot(str, str, bool)
    def _errored(self, message: str, hint: str, cancelled: bool) -> None:
        self._call(3, message, hint, cancelled)

    @Slot()
    def _finished(self) -> None:
        self._call(4)
        self._forget()
        _live.discard(self.worker)
        self.worker._delivery = None
        # The worker thread emitted ``finished`` last and is returning: wait for that (microseconds),
        # then delete the worker here, on its own thread, never from the pool thread's last reference.
        self.worker.released.wait(5.0)
        self.worker.deleteLater()
        self.deleteLater()

    @Slot()
    def _owner_gone(self) -> None:
        self.owner = None  # being destroyed: nothing to disconnect from
        self.worker.discard()


def start_worker(
    fn: WorkFn,
    *,
    owner: QObject | None = None,
    latest: str | None = None,
    lane: Lane | None = None,
    on_start: Callable[[], None] | None = None,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[str, str, bool], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    name: str = "",
) -> Worker:
    """Run ``fn(report, cancel)`` off the GUI thread; the callbacks run on the GUI thread.

    Call it from the GUI thread; keep the Worker to cancel it. ``on_error`` gets (message, next
    step, cancelled). See the module docstring for ``owner``, ``latest`` and ``lane``.
    """
    import shiboken6

    worker = Worker(fn, name or getattr(fn, "__qualname__", "work"))
    key = (id(owner) if owner is not None else 0, latest) if latest is not None else None
    if key is not None and (older := _latest.get(key)) is not None:
        older.discard()
    if owner is not None and not shiboken6.isValid(owner):
        worker.ended.set()  # its owner is gone: nothing would be shown
        return worker
    from PySide6.QtCore import QCoreApplication

    # Owned by the application from now on, not by Python references (the pool thread holds one):
    # ``_Delivery._finished`` deletes it on the GUI thread once the worker thread let go of it.
    worker.setParent(QCoreApplication.instance())
    worker._delivery = _Delivery(worker, owner, key, (on_start, on_yield, on_return, on_error, on_finish))
    if key is not None:
        _latest[key] = worker
    _live.add(worker)
    if lane is not None:
        lane.pool.start(_Runnable(worker))
    else:
        pool = QThreadPool.globalInstance()
        pool.setMaxThreadCount(max(pool.maxThreadCount(), POOL_THREADS))
        pool.start(_Runnable(worker))
    return worker


def discard_workers(owner: QObject) -> None:
    """Cancel every worker of ``owner`` or of a widget inside it, and deliver nothing more of them
    (what a panel's ``shutdown`` does)."""
    for worker in list(_live):
        delivery = worker._delivery
        node = delivery.owner if delivery is not None else None
        while node is not None and node is not owner:
            node = node.parent()
        if node is not None:
            worker.discard()


def running_workers() -> list[Worker]:
    """Workers started and not yet over (queued ones included)."""
    return sorted((w for w in _live if not w.ended.is_set()), key=lambda w: w.id)


def wait_for_workers(timeout_ms: int) -> bool:
    """Block until every started worker's work is over, or ``timeout_ms`` passed; True if all are.

    It does not run the event loop: what they deliver arrives when it runs next."""
    deadline = time.monotonic() + timeout_ms / 1000
    return all(w.ended.wait(max(0.0, deadline - time.monotonic())) for w in running_workers())


def shutdown_workers(timeout_ms: int = 3000) -> bool:
    """At quit: cancel every worker, deliver nothing more, and wait for them a moment, so no thread
    outlives the app. True if all ended in time."""
    for worker in list(_live):
        worker.discard()
    return wait_for_workers(timeout_ms)

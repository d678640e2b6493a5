"""The app's side of the model process: start it, talk to it, survive it.

``EngineClient`` runs ``python -m app.engine.worker`` through :class:`app.engine.child.ChildProcess`
and exchanges :mod:`protocol` lines with it. If the child crashes, runs out of memory or is killed,
calls raise :class:`~app.engine.errors.ProcessDied` (an ``EngineError``) with the cause in words and
the next step — the same cause for every thread that meets it; the next ``load`` starts a fresh child.

Threads. The client is shared by design:

- from any thread, at any time, never waiting for a running request: :meth:`new_request_id`,
  :meth:`cancel`, :meth:`kill`, :meth:`close`, :attr:`pid`, :attr:`loaded`, :attr:`last_death`;
- requests — :meth:`start`, :meth:`load`, :meth:`generate`, :meth:`count_tokens`, :meth:`stats`,
  :meth:`unload` — run one at a time: a second thread's request waits for the first to end, and a
  request started on the thread whose ``generate`` is still open raises ``RuntimeError``
  (it would read the other's messages).

Every request is named: the caller may allocate its id first (:meth:`new_request_id`), so a Stop
pressed before the request even starts — while a chat trims its history, say — cancels it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from app.core.errors import EngineError
from app.engine import protocol as P
from app.engine.child import ChildDeath, ChildProcess
from app.engine.errors import LoadFailed, ProcessDied, RequestCancelled, from_failure
from app.engine.fair_lock import FairLock
from app.engine.llama_log import load_error

_HINT = "Try a smaller quantization, a shorter context or fewer GPU layers."
_OTHER_HINT = "Load the model again."
DRAIN_TIMEOUT_S = 30.0  # after a cancel, the child ends the request within a token or a graph node


# ggml-rpc.cpp aborts the client when a worker stops answering (RPC_STATUS_ASSERT) or cannot be reached
_RPC_ABORTS = ("Remote RPC server crashed", "Failed to connect to", "RPC handshake failed")


def _rpc_abort(died: ProcessDied) -> bool:
    tail = "".join(died.death.stderr_tail)
    return any(a in tail for a in _RPC_ABORTS)


def _worker_lost(died: ProcessDied, req: P.Load | None) -> ProcessDied:
    """A model process that llama.cpp's RPC client aborted: which worker went away, in words."""
    if req is None or not req.rpc_devices or not _rpc_abort(died):
        return died
    from app.core.machine.workers import parse_endpoints, probe_worker

    gone = []
    for ep in parse_endpoints(",".join(dict.fromkeys(req.rpc_devices))):
        w = probe_worker(ep, timeout_s=2.0, rounds=1)
        if not w.usable and "busy" not in w.error:
            gone.append(f"{ep} ({w.error})")
    who = (
        "worker " + ", ".join(gone)
        if gone
        else "a worker (" + ", ".join(dict.fromkeys(req.rpc_devices)) + ")"
    )
    stage = died.death.stage or "unexpectedly"
    return ProcessDied(f"The model process ended {stage}: {who} stopped answering, and llama.cpp cannot "
                       "go on without the layers it held.", death=died.death,
                       hint="Load the model again: the next plan leaves out workers that do not answer.")  # fmt: skip


def _died_reading(died: ProcessDied, req: P.Load) -> ProcessDied:
    """A model process that crashed while loading, with no device error: llama.cpp hit something in
    the file it could not handle (ggml aborts on some damage instead of failing the load). Say so,
    with llama.cpp's own last error line, instead of suggesting a smaller quantization."""
    death = died.death
    crashed = death is not None and death.returncode in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS)
    if death is None or not crashed or death.device_error or death.closed_by_app or _rpc_abort(died):
        return died  # a worker that went away is not the file's fault (_worker_lost says which)
    reason = load_error("".join(death.stderr_tail)) or "it gave no reason"
    return ProcessDied(f"{died} The file {Path(req.model_path).name} looks damaged: llama.cpp's last error was "
                       f"\"{reason}\".", death=death,
                       hint="Download it again (`tailorlm pull` checks every byte), or choose another file.")  # fmt: skip


class EngineClient:
    """One model process; see the module docstring for which methods any thread may call."""

    def __init__(self) -> None:
        self._child: ChildProcess[P.Message] | None = None
        self._loaded: P.Loaded | None = None
        self._load_req: P.Load | None = None  # the last load asked for: its workers name a lost one
        self._lock = threading.Lock()  # the child reference, the id counter
        self._next_id = 1
        self._cancelled = P.RecentIds()
        # requests run in the order they were made (a server and the window's chat share one client)
        self._request_lock = FairLock()
        self._request_thread: int | None = None  # the thread whose request holds _request_lock

    # --- any thread -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None else None

    @property
    def loaded(self) -> P.Loaded | None:
        """What the running process has loaded; None when nothing is, or the process is gone."""
        child = self._child
        return self._loaded if child is not None and child.alive else None

    @property
    def last_death(self) -> ChildDeath | None:
        """How the current (or last) model process ended; None while it runs."""
        child = self._child
        return child.death if child is not None else None

    def new_request_id(self) -> int:
        """An id for a request about to be made; cancel it with :meth:`cancel` at any time."""
        with self._lock:
            rid = self._next_id
            self._next_id += 1
            return rid

    def is_cancelled(self, request_id: int) -> bool:
        """Whether :meth:`cancel` was called for ``request_id`` (work done for it in this process,
        such as rendering its prompt, checks this)."""
        return request_id in self._cancelled

    def cancel(self, request_id: int) -> None:
        """Stop request ``request_id``: running, queued, or not started yet (it then ends at once
        with ``Done(stop_reason="cancelled")``). One line to the child; never raises."""
        self._cancelled.add(request_id)
        child = self._child
        if child is not None:
            with contextlib.suppress(EngineError):  # a dead process has nothing to cancel
                child.send(P.encode(P.Cancel(request_id=request_id)))

    def kill(self) -> None:
        """SIGKILL the model process now (a stuck load, a test of crash handling)."""
        child = self._child
        if child is not None:
            child.kill()

    def close(self) -> None:
        """End the model process: a Shutdown, then SIGKILL if it does not go within 5 s."""
        child = self._child
        if child is not None:
            child.close(P.encode(P.Shutdown()))

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests, one at a time -------------------------------------------------------------

    @contextlib.contextmanager
    def _one_request(self, stage: str, *, start: bool = False) -> Iterator[ChildProcess[P.Message]]:
        """Hold the request lock; yield the live child (started first if ``start`` and there is
        none, or the last one died), its stage set for the death sentence."""
        if self._request_thread == threading.get_ident():
            raise RuntimeError("EngineClient: this thread's generate is still open; finish or close it first")
        with self._request_lock:
            self._request_thread = threading.get_ident()
            try:
                if start:
                    self._ensure_started()
                child = self._live_child()
                child.stage = stage
                try:
                    yield child
                except ProcessDied as died:
                    raise _worker_lost(died, self._load_req) from None
                finally:
                    child.stage = ""
            finally:
                self._request_thread = None

    def _live_child(self) -> ChildProcess[P.Message]:
        child = self._child
        if child is None:
            raise EngineError("The model process is not running.", hint="Load a model first.")
        if not child.alive:
            raise child.died()
        return child

    def start(self) -> None:
        """Start the model process now (``load`` also does); lets a monitor attach first."""
        with self._one_request("", start=True):
            pass

    def _ensure_started(self) -> None:
        """A live child: a fresh one if there is none or the last one died. Under the request lock."""
        with self._lock:
            child = self._child
            if child is not None and child.alive:
                return
            if child is not None:
                child.close()  # reap it, if nobody has: its death stays readable until replaced
            self._loaded = None
            self._child = ChildProcess(
                "app.engine.worker",
                decode=P.decode,
                what="The model process",
                hint=_HINT,
                other_hint=_OTHER_HINT,
            )

    def _next(self, child: ChildProcess[P.Message], timeout_s: float) -> P.Message:
        msg = child.poll(timeout_s)
        if msg is None:
            raise EngineError(f"The model process did not answer within {timeout_s:.0f} s.")
        return msg

    def load(self, req: P.Load, *, on_progress: Callable[[float], None] | None = None,
             timeout_s: float = 600.0) -> P.Loaded:  # fmt: skip
        if not Path(req.model_path).exists():
            raise EngineError(f"No such model file: {req.model_path}")
        with self._one_request("while loading the model", start=True) as child:
            self._loaded = None
            self._load_req = req
            child.send(P.encode(req))
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    msg = self._next(child, max(0.1, deadline - time.monotonic()))
                except ProcessDied as died:
                    raise _died_reading(died, req) from None
                if isinstance(msg, P.LoadProgress):
                    if on_progress:
                        on_progress(msg.fraction)
                elif isinstance(msg, P.Loaded):
                    self._loaded = msg
                    return msg
                elif isinstance(msg, P.Failed):
                    raise LoadFailed(f"llama.cpp could not load {Path(req.model_path).name}: {msg.message}.",
                                     hint=msg.hint)  # fmt: skip

    def generate(self, prompt: str, sampling: P.Sampling | None = None, *, request_id: int | None = None,
                 flush_ms: float = 20.0, timeout_s: float = 3600.0) -> Iterator[P.TokenChunk | P.Done]:  # fmt: skip
        """Stream an answer: ``TokenChunk`` events, then one ``Done``. Stop it with
        ``cancel(request_id)`` from any thread, or by closing the generator. A request cancelled
        before it started yields only ``Done(stop_reason="cancelled")``, without touching the model."""
        rid = self.new_request_id() if request_id is None else request_id
        if rid in self._cancelled:
            yield P.Done.cancelled_before_start(rid)
            return
        with self._one_request("while writing an answer") as child:
            if self._loaded is None:
                raise EngineError("No model is loaded.", hint="Load a model first.")
            child.send(P.encode(P.Generate(request_id=rid, prompt=prompt, sampling=sampling or P.Sampling(),
                                           flush_ms=flush_ms)))  # fmt: skip
            finished = False
            try:
                while True:
                    msg = self._next(child, timeout_s)
                    if getattr(msg, "request_id", None) != rid:
                        continue  # the tail of an earlier request that timed out
                    if isinstance(msg, P.TokenChunk):
                        yield msg
                    elif isinstance(msg, P.Done):
                        finished = True
                        yield msg
                        return
                    elif isinstance(msg, P.Failed):
                        finished = True
                        if msg.error:  # a TailorError the child raised: the same class here
                            raise from_failure(msg)
                        raise EngineError(f"The model could not answer: {msg.message}.", hint=msg.hint)
            finally:
                if not finished and child.alive:
                    # The consumer stopped early: cancel and drain to the Done so the next request is clean.
                    self.cancel(rid)
                    with contextlib.suppress(EngineError):
                        while not self._ends(self._next(child, DRAIN_TIMEOUT_S), rid):
                            pass

    def bench(self, req: P.Bench, *, on_progress: Callable[[float], None] | None = None,
              timeout_s: float = 600.0) -> P.BenchDone:  # fmt: skip
        """Measure the loaded model (:class:`P.Bench`); ``cancel(req.request_id)`` from any thread
        ends it early with ``stop_reason="cancelled"`` and the repetitions done so far."""
        if req.request_id in self._cancelled:
            return P.BenchDone(request_id=req.request_id, n_prompt=0, n_gen=0, prompt_tok_s=[], gen_tok_s=[],
                               stop_reason="cancelled", rss_bytes=0, peak_rss_bytes=0)  # fmt: skip
        with self._one_request("while measuring its speed") as child:
            if self._loaded is None:
                raise EngineError("No model is loaded.", hint="Load a model first.")
            child.send(P.encode(req))
            while True:
                msg = self._next(child, timeout_s)
                if getattr(msg, "request_id", None) != req.request_id:
                    continue
                if isinstance(msg, P.BenchProgress):
                    if on_progress is not None:
                        on_progress(msg.fraction)
                elif isinstance(msg, P.BenchDone):
                    return msg
                elif isinstance(msg, P.Failed):
                    if msg.error:
                        raise from_failure(msg)
                    raise EngineError(f"The benchmark failed: {msg.message}.", hint=msg.hint)

    @staticmethod
    def _ends(msg: P.Message, rid: int) -> bool:
        return isinstance(msg, P.Done | P.Failed) and msg.request_id == rid

    def count_tokens(self, text: str, *, request_id: int | None = None, timeout_s: float = 60.0) -> int:
        """Tokens of ``text`` in the loaded model. Serving request ``request_id`` (a chat trimming
        its history for an answer), it raises :class:`RequestCancelled` once that is cancelled."""
        rid = self.new_request_id() if request_id is None else request_id
        if rid in self._cancelled:
            raise RequestCancelled(rid)
        with self._one_request("while counting tokens") as child:
            child.send(P.encode(P.Tokenize(request_id=rid, text=text)))
            while True:
                msg = self._next(child, timeout_s)
                if getattr(msg, "request_id", None) != rid:
                    continue
                if isinstance(msg, P.TokenCount):
                    return msg.n_tokens
                if isinstance(msg, P.Done):  # the child saw the cancel first
                    raise RequestCancelled(rid)
                if isinstance(msg, P.Failed):
                    raise EngineError(msg.message)

    def stats(self, *, timeout_s: float = 10.0) -> P.StatsReport:
        """The model process's own view: memory, and how full the context is."""
        rid = self.new_request_id()
        with self._one_request("") as child:
            child.send(P.encode(P.Stats(request_id=rid)))
            while True:
                msg = self._next(child, timeout_s)
                if isinstance(msg, P.StatsReport) and msg.request_id == rid:
                    return msg

    def unload(self) -> None:
        child = self._child
        if child is None or not child.alive:  # nothing loaded in a process that is gone
            self._loaded = None
            return
        with self._one_request("") as child:
            self._loaded = None
            child.send(P.encode(P.Unload()))

"""One way to run a child process of TailorLM: the model process, the quality check, the quantizer
and the memory probe all start, talk and end through :class:`ChildProcess`.

Why children at all: llama.cpp aborts the whole process on some errors and the kernel kills the
largest process when memory runs out; in a child that costs one request, not the app.

The rules that make it safe to share between threads:

- one owner of the ``Popen`` handle: nothing outside :class:`ChildProcess` signals, waits for or
  closes it;
- writes (:meth:`ChildProcess.send`) and teardown (:meth:`~ChildProcess.kill`,
  :meth:`~ChildProcess.close`, the reaping when the output ends) happen under one lock, so two
  threads never both tear the process down;
- the death is computed once, when the process is reaped, from its real exit status (SIGKILL,
  SIGSEGV, SIGABRT, a CUDA error in its stderr, what it was doing), and every caller afterwards
  gets that same cause — never a guess such as "exited with code 0" made after another thread
  already reaped it.

The child's side: :func:`app.core.runtime.private_stdout` gives it a private copy of stdout for protocol lines,
and :func:`serve_one_job` answers one request for the one-shot jobs.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Generic, NoReturn, TypeVar

from app.core.errors import Cancelled, TailorError
from app.core.machine.oom import oom_counters, oom_kill_between
from app.core.runtime import module_command, private_stdout
from app.engine import protocol as P
from app.engine.errors import ProcessDied
from app.engine.llama_log import device_error

T = TypeVar("T")
STDERR_TAIL_LINES = 50  # enough for llama.cpp's last error and a Python traceback
REAP_TIMEOUT_S = 5.0  # after its output ended, a child that is still there is killed
JOB_POLL_S = 0.05  # how often a job's parent checks the cancel token while the child works
_EOF = object()


def signal_words(returncode: int, *, oom_killed: bool | None = None) -> str:
    """How a process ended, in words: "it was killed (SIGKILL) …", "it exited with code 1".
    ``oom_killed``: whether the kernel's OOM-kill counters grew meanwhile (None: not readable)."""
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGKILL and oom_killed:
            return f"the system ran out of memory and killed it ({name})"
        if sig == signal.SIGKILL and oom_killed is False:
            return f"it was killed ({name}) from outside TailorLM; the system reports no out-of-memory kill"
        if sig == signal.SIGKILL:
            return f"it was killed ({name}); this system does not say whether memory ran out"
        if sig == signal.SIGSEGV:
            return f"it crashed ({name})"
        if sig == signal.SIGABRT:
            return f"llama.cpp aborted ({name})"
        return f"it was stopped by {name}"
    return f"it exited with code {returncode}"


@dataclass(frozen=True)
class ChildDeath:
    """How a child ended; computed once, when it was reaped."""

    returncode: int
    stage: str  # what it was doing, in words ("while writing an answer"); "" when idle
    device_error: str | None  # "out of memory": the CUDA error ggml logged before aborting
    stderr_tail: tuple[str, ...]
    closed_by_app: bool  # the app closed it (close()), rather than it dying on its own
    oom_killed: bool | None = None  # SIGKILL: did the kernel's OOM-kill counters grow? None: unknown

    @property
    def cause(self) -> str:
        if self.closed_by_app and self.returncode in (0, -signal.SIGKILL):
            return "TailorLM closed it"
        cuda = f" after CUDA error: {self.device_error}" if self.device_error else ""
        return signal_words(self.returncode, oom_killed=self.oom_killed) + cuda

    @property
    def maybe_memory(self) -> bool:
        """Whether running out of memory is known, or cannot be ruled out, as the cause."""
        if self.device_error and "out of memory" in self.device_error:
            return True
        return self.returncode == -signal.SIGKILL and self.oom_killed is not False

    def sentence(self, what: str) -> str:
        """ "The model process ended while writing an answer: it was killed (SIGKILL; …).\""""
        return f"{what} ended {self.stage or 'unexpectedly'}: {self.cause}."


# numpy's BLAS threads, one per core by default, spin for a while after each matrix product: in a
# process whose cores llama.cpp's own threads use, they take turns away from them (the importance
# matrix's expert sums made every decode of a MoE 13 % slower on 2 cores, 2.16 s against 1.91 s).
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def child_env() -> dict[str, str]:
    """The environment of a llama.cpp child: unbuffered Python; no gdb backtrace on an abort (seconds
    and ~50 lines, which would push ggml's own reason out of the stderr tail the death sentence is
    read from); numpy's BLAS on one thread unless the user set its thread count."""
    return {**BLAS_THREADS, **os.environ, "PYTHONUNBUFFERED": "1", "GGML_NO_BACKTRACE": "1"}


class ChildProcess(Generic[T]):
    """``module`` running as a child, spoken to in lines: ``send`` writes one, ``poll`` reads the
    next decoded one. See the module docstring for the threading rules.

    ``what`` names the process in the death sentence ("The model process"); ``hint`` is the next
    step that sentence suggests when memory may have run out, ``other_hint`` otherwise (a crash,
    a kill from outside). Output lines that do not decode join the stderr tail.
    """

    def __init__(self, module: str, *args: str, decode: Callable[[bytes], T], what: str,
                 hint: str | None = None, other_hint: str | None = None) -> None:  # fmt: skip
        self.what = what
        self.hint = hint
        self.other_hint = other_hint if other_hint is not None else hint
        self._oom_before = oom_counters()
        self.stage = ""  # set by the owner; recorded in the death
        self._decode = decode
        self._lock = threading.Lock()
        self._inbox: queue.Queue[object] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._death: ChildDeath | None = None
        self._closing = False
        self._eof_seen = False
        self._proc = subprocess.Popen(
            module_command(module, *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=child_env(),
        )  # fmt: skip
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_out, args=(self._proc.stdout,), daemon=True, name=f"{module}-out"),
            threading.Thread(target=self._read_err, args=(self._proc.stderr,), daemon=True, name=f"{module}-err"),
        ]  # fmt: skip
        for t in self._readers:
            t.start()

    # --- state, from any thread ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process id while it runs; None once it ended."""
        return self._proc.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._death is None and self._proc.poll() is None

    @property
    def death(self) -> ChildDeath | None:
        return self._death

    def died(self) -> ProcessDied:
        """The error for this child's death (reaping it first if nobody has yet): the same
        sentence for every caller."""
        death = self._finish()
        hint = self.hint if death.maybe_memory else self.other_hint
        return ProcessDied(death.sentence(self.what), death=death, hint=hint)

    # --- talking ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write one line. Raises :class:`ProcessDied` if the child has ended."""
        with self._lock:
            stdin = self._proc.stdin
            if self._death is None and not self._closing and stdin is not None:
                try:
                    stdin.write(data)
                    stdin.flush()
                    return
                except OSError:  # a broken pipe: the child is gone
                    pass
            self._finish_locked()
        raise self.died()

    def poll(self, timeout_s: float | None) -> T | None:
        """The next message, or None after ``timeout_s`` without one. Raises :class:`ProcessDied`
        once the child's output has ended (after every message it wrote before)."""
        if self._eof_seen:
            raise self.died()
        try:
            item = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if item is _EOF:
            self._eof_seen = True
            raise self.died()
        return item  # type: ignore[return-value]

    def _read_out(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                self._inbox.put(self._decode(line))
            except (ValueError, TypeError):  # not ours: a library writing to stdout
                self._stderr.append(line.decode("utf-8", "replace"))
        self._inbox.put(_EOF)

    def _read_err(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line.decode("utf-8", "replace"))

    # --- teardown ---------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the child now (a cancel, a stuck load). Whoever reads next meets the death."""
        with self._lock:
            if self._death is None and self._proc.poll() is None:
                self._proc.kill()

    def close(self, goodbye: bytes | None = None, *, timeout_s: float = REAP_TIMEOUT_S) -> ChildDeath:
        """End the child: ``goodbye`` (a Shutdown line) and end of input, up to ``timeout_s`` to
        exit, then SIGKILL; reap it. Safe from any thread, any number of times."""
        with self._lock:
            if self._death is not None:
                return self._death
            self._closing = True
            stdin = self._proc.stdin
            with contextlib.suppress(OSError):
                if stdin is not None:
                    if goodbye is not None:
                        stdin.write(goodbye)
                    stdin.close()  # end of input: every child of ours exits on it
            # Waiting here holds the lock: a cancel from another thread waits at most timeout_s,
            # and only while the process is going away.
            return self._finish_locked(wait_s=timeout_s)

    def _finish(self) -> ChildDeath:
        with self._lock:
            return self._finish_locked()

    def _finish_locked(self, *, wait_s: float = REAP_TIMEOUT_S) -> ChildDeath:
        """Reap the child and compute its death — once. Called with the lock held."""
        if self._death is not None:
            return self._death
        try:
            code = self._proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        for t in self._readers:
            t.join(timeout=2)  # they end at EOF, once the process is gone
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        tail = tuple(self._stderr)
        oom = oom_kill_between(self._oom_before, oom_counters()) if code == -signal.SIGKILL else None
        self._death = ChildDeath(code, self.stage, device_error("".join(tail)), tail, self._closing, oom)
        return self._death


# --- one-shot jobs: the quality check, the quantizer -------------------------------------------


def start_job(module: str, *args: str, what: str, hint: str | None) -> ChildProcess[P.Message]:
    """A one-shot job's child started before its request is ready, so that its interpreter and
    imports overlap the caller's own checks (``args`` may tell it what to import); hand it to
    :func:`run_job`, or kill and close it when a check fails."""
    return ChildProcess(module, *args, decode=P.decode, what=what, hint=hint)


def job(module: str, request: P.Message, *, result: type[P.Message], what: str, hint: str | None,
        cancel: threading.Event | None, cancelled_message: str) -> Iterator[P.Message]:  # fmt: skip
    """Run ``module`` on ``request`` and yield each message it sends (:func:`run_job`)."""
    yield from run_job(start_job(module, what=what, hint=hint), request, result=result, cancel=cancel,
                       cancelled_message=cancelled_message)  # fmt: skip


def run_job(child: ChildProcess[P.Message], request: P.Message, *, result: type[P.Message],
            cancel: threading.Event | None, cancelled_message: str) -> Iterator[P.Message]:  # fmt: skip
    """Send ``request`` to ``child`` (started by :func:`start_job`) and yield each message it sends;
    stop iterating at its ``result`` or its ``Failed``. A set ``cancel`` kills the child and raises
    ``Cancelled``; a child that ends without answering raises :class:`ProcessDied`. The child is
    gone when this generator ends, however it ends."""
    answered = False  # the child sent its last message and exits on its own
    try:
        child.send(P.encode(request))
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled(cancelled_message)
            msg = child.poll(JOB_POLL_S)
            if msg is not None:
                answered = isinstance(msg, result | P.Failed)
                yield msg
    finally:
        if not answered:  # cancelled, or the caller's progress callback raised: it must not outlive us
            child.kill()
        child.close()


def serve_one_job(handle: Callable[[P.Message, Callable[[P.Message], None]], P.Message]) -> NoReturn:
    """A job child's main: read one request, run ``handle(request, send)``, write its result, or
    a ``Failed`` naming the error class; then exit (0 on a result, 1 otherwise)."""
    out = private_stdout()
    lock = threading.Lock()  # llama.cpp may log (and so report progress) from its own threads

    def send(msg: P.Message) -> None:
        with lock:
            out.write(P.encode(msg))

    request = P.decode(sys.stdin.buffer.readline())
    code = 1
    try:
        send(handle(request, send))
        code = 0
    except TailorError as exc:
        send(P.Failed(stage=request.kind, message=str(exc), hint=exc.hint, error=type(exc).__name__))
    except Exception as exc:  # a bug or a llama.cpp surprise: the traceback to stderr, the gist up
        traceback.print_exc()
        send(P.Failed(stage=request.kind, message=f"{type(exc).__name__}: {exc}"))
    sys.stderr.flush()
    # No interpreter teardown: llama.cpp may still call a log callback while Python finalizes.
    os._exit(code)

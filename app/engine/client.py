"""The app's side of the model process: start it, talk to it, survive it.

``EngineClient`` spawns ``python -m app.engine.worker`` and exchanges :mod:`protocol` lines with
it. If the child crashes, runs out of memory or is killed, calls raise ``EngineError`` with the
cause in words and the next step; the client restarts a fresh child on the next ``load``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from app.core.errors import EngineError
from app.core.runtime import module_command
from app.engine import protocol as P
from app.engine.llama_log import device_error

_EOF = object()


def _signal_words(returncode: int) -> str:
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == signal.SIGKILL:
            return f"it was killed ({name}; the system kills the largest process when memory runs out)"
        if sig == signal.SIGSEGV:
            return f"it crashed ({name})"
        if sig == signal.SIGABRT:
            return f"llama.cpp aborted ({name})"
        return f"it was stopped by {name}"
    return f"it exited with code {returncode}"


class EngineClient:
    """One model process. Not thread-safe: use it from one thread (the GUI uses one worker)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._inbox: queue.Queue[object] = queue.Queue()
        self._next_id = 1
        self._stage = "starting"
        self.loaded: P.Loaded | None = None
        self.stderr_tail: list[str] = []

    # --- process ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the model process now (``load`` also does); lets a monitor attach first."""
        self._start()

    def _start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            module_command("app.engine.worker"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        self._inbox = queue.Queue()
        self.stderr_tail = []
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True, name="engine-out"),
            threading.Thread(
                target=self._read_err, args=(self._proc.stderr,), daemon=True, name="engine-err"
            ),
        ]
        for t in self._readers:
            t.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                self._inbox.put(P.decode(line))
            except (ValueError, TypeError):
                self.stderr_tail.append(line.decode("utf-8", "replace"))
        self._inbox.put(_EOF)

    def _read_err(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.stderr_tail.append(line.decode("utf-8", "replace"))
            del self.stderr_tail[:-50]

    def _send(self, msg: P.Message) -> None:
        if self._proc is None or self._proc.poll() is not None or self._proc.stdin is None:
            raise self._died()
        try:
            self._proc.stdin.write(P.encode(msg))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _reap(self, proc: subprocess.Popen[bytes]) -> int:
        code = proc.wait(timeout=5)
        for t in getattr(self, "_readers", []):
            t.join(timeout=2)  # they end at EOF, once the process is gone
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code

    def _died(self) -> EngineError:
        proc = self._proc
        code = self._reap(proc) if proc is not None else 0
        self._proc = None
        self.loaded = None
        stage = {"load": "while loading the model", "generate": "while writing an answer"}.get(
            self._stage, ""
        )
        hint = ("Try a smaller quantization, a shorter context or fewer GPU layers — `tailorlm advise` "
                "shows what fits.")  # fmt: skip
        # ggml aborts on a failed CUDA call; the child logged the cause to stderr first.
        cuda = device_error("".join(self.stderr_tail))
        cause = f" after CUDA error: {cuda}" if cuda else ""
        return EngineError(
            f"The model process ended {stage}: {_signal_words(code)}{cause}.".replace("  ", " "), hint=hint
        )

    def _next(self, timeout_s: float | None) -> P.Message:
        try:
            item = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            raise EngineError(f"The model process did not answer within {timeout_s:.0f} s.") from None
        if item is _EOF:
            raise self._died()
        assert isinstance(item, P.Message)
        return item

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.write(P.encode(P.Shutdown()))
                proc.stdin.flush()
            self._reap(proc)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            self._reap(proc)

    def kill(self) -> None:
        """Stop the model process at once (a stuck load, or a test of crash handling)."""
        if self._proc is not None:
            self._proc.kill()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests --------------------------------------------------------------------------

    def load(self, req: P.Load, *, on_progress: Callable[[float], None] | None = None,
             timeout_s: float = 600.0) -> P.Loaded:  # fmt: skip
        if not Path(req.model_path).exists():
            raise EngineError(f"No such model file: {req.model_path}")
        self._start()
        self._stage = "load"
        self._send(req)
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._next(max(0.1, deadline - time.monotonic()))
            if isinstance(msg, P.LoadProgress):
                if on_progress:
                    on_progress(msg.fraction)
            elif isinstance(msg, P.Loaded):
                self._stage = "idle"
                self.loaded = msg
                return msg
            elif isinstance(msg, P.Failed):
                self._stage = "idle"
                raise EngineError(f"llama.cpp could not load {Path(req.model_path).name}: {msg.message}.",
                                  hint=msg.hint)  # fmt: skip

    def generate(self, prompt: str, sampling: P.Sampling | None = None, *, flush_ms: float = 20.0,
                 timeout_s: float = 3600.0) -> Iterator[P.TokenChunk | P.Done]:  # fmt: skip
        """Stream an answer: ``TokenChunk`` events, then one ``Done``. Cancel with :meth:`cancel`
        (from another thread) or by closing the generator."""
        if self.loaded is None:
            raise EngineError("No model is loaded.", hint="Load a model first.")
        rid = self._next_id
        self._next_id += 1
        self._stage = "generate"
        self._send(
            P.Generate(request_id=rid, prompt=prompt, sampling=sampling or P.Sampling(), flush_ms=flush_ms)
        )
        finished = False
        try:
            while True:
                msg = self._next(timeout_s)
                if isinstance(msg, P.TokenChunk) and msg.request_id == rid:
                    yield msg
                elif isinstance(msg, P.Done) and msg.request_id == rid:
                    finished = True
                    yield msg
                    return
                elif isinstance(msg, P.Failed) and msg.request_id == rid:
                    finished = True
                    raise EngineError(f"The model could not answer: {msg.message}.", hint=msg.hint)
        finally:
            self._stage = "idle"
            if not finished and self._proc is not None and self._proc.poll() is None:
                # The consumer stopped early: cancel and drain to the Done so the next request is clean.
                self.cancel()
                for msg in self._drain(rid):
                    del msg

    def _drain(self, rid: int) -> Iterator[P.Message]:
        while True:
            msg = self._next(30.0)
            yield msg
            if isinstance(msg, P.Done | P.Failed) and getattr(msg, "request_id", None) == rid:
                return

    def cancel(self) -> None:
        """Ask the running generation to stop; it ends with ``Done(stop_reason="cancelled")``."""
        with contextlib.suppress(EngineError):  # a dead process has nothing to cancel
            self._send(P.Cancel(request_id=-1))

    def count_tokens(self, text: str, *, timeout_s: float = 60.0) -> int:
        rid = self._next_id
        self._next_id += 1
        self._send(P.Tokenize(request_id=rid, text=text))
        while True:
            msg = self._next(timeout_s)
            if isinstance(msg, P.TokenCount) and msg.request_id == rid:
                return msg.n_tokens
            if isinstance(msg, P.Failed) and msg.request_id == rid:
                raise EngineError(msg.message)

    def stats(self, *, timeout_s: float = 10.0) -> P.StatsReport:
        """The model process's own view: memory, and how full the context is."""
        self._start()
        rid = self._next_id
        self._next_id += 1
        self._send(P.Stats(request_id=rid))
        while True:
            msg = self._next(timeout_s)
            if isinstance(msg, P.StatsReport) and msg.request_id == rid:
                return msg

    def unload(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._send(P.Unload())
        self.loaded = None

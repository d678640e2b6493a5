"""The app's side of the live sampler (:mod:`app.core.machine.sampler`): one child for every view.

The Machine panel's charts and the chat's memory monitor both subscribe to :func:`shared_sampler`.
The first subscription starts the child, the last one to close stops it, so nothing samples (nor
keeps a laptop's GPU awake) while nobody looks. Each subscription may ask for an interval (the
fastest wins) and for processes whose VRAM to attribute (the union is watched).

Thread-safe: the GUI thread, the chat's engine thread and a detection worker may all use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import IO

from app.core.machine.sampler import DEFAULT_INTERVAL_S, MODULE, MachineSample
from app.core.runtime import module_command

STOP_GRACE_S = 2.0  # a sampler that does not end this long after its stdin closed is killed
RESTART_AFTER_S = 5.0  # a sampler that dies after running this long is restarted; sooner, not


class Subscription:
    """One view's hold on the sampler; close it (or leave its ``with`` block) when done."""

    def __init__(self, client: SamplerClient, interval_s: float | None, pids: Iterable[int]) -> None:
        self._client = client
        self.interval_s = interval_s  # None: no wish, the others' interval (or the default) serves
        self.pids = frozenset(pids)
        self.closed = False

    @property
    def latest(self) -> MachineSample | None:
        """The newest sample of the shared child; None before the first."""
        return self._client.latest

    @property
    def error(self) -> str | None:
        """Why the child ended, in words, if it did."""
        return self._client.error

    def watch(self, *pids: int) -> None:
        """Attribute VRAM to these processes too (``process_vram_bytes`` of later samples)."""
        self._client._change(self, self.pids | set(pids))

    def wait(self, *, newer_than: float, timeout_s: float) -> MachineSample | None:
        """The first sample that arrived after ``newer_than`` (time.monotonic()), or None."""
        return self._client._wait(newer_than, timeout_s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._client._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SamplerClient:
    """Starts, feeds and stops one sampler child for all of its subscriptions."""

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        self._env = dict(env) if env is not None else None  # None: this process's environment
        self._lock = threading.Condition()
        self._subs: list[Subscription] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._sent = ""
        self.latest: MachineSample | None = None
        self.error: str | None = None
        self._stderr_tail: deque[str] = deque(maxlen=5)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None

    def subscribe(self, *, interval_s: float | None = None, pids: Iterable[int] = ()) -> Subscription:
        sub = Subscription(self, interval_s, pids)
        with self._lock:
            self._subs.append(sub)
            if self._proc is None:
                self._start()
            else:
                self._send_wishes()
        return sub

    def read_now(self, *, max_age_s: float = 1.0, timeout_s: float = 10.0) -> MachineSample | None:
        """A sample at most ``max_age_s`` old: the running child's latest, or one from a short
        subscription (which starts the child if nobody else holds it); None on timeout."""
        with self.subscribe() as sub:
            return sub.wait(newer_than=time.monotonic() - max_age_s, timeout_s=timeout_s)

    # --- under the lock ----------------------------------------------------------------------

    def _wishes(self) -> str:
        intervals = [s.interval_s for s in self._subs if s.interval_s is not None]
        pids = sorted(set().union(*(s.pids for s in self._subs)))
        return json.dumps({"interval_s": min(intervals, default=DEFAULT_INTERVAL_S), "pids": pids})

    def _start(self) -> None:
        env = dict(self._env if self._env is not None else os.environ, PYTHONUNBUFFERED="1")
        wishes = self._wishes()  # on the command line too, so the first sample already has them
        try:
            proc = subprocess.Popen(module_command(MODULE, wishes), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)  # fmt: skip
        except OSError as e:
            self.error = f"The live sampler could not start ({e})."
            return
        self._proc, self._started_at, self._sent, self.error = proc, time.monotonic(), wishes, None
        self._stderr_tail.clear()
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(target=self._read, args=(proc,), daemon=True, name="sampler-out").start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True, name="sampler-err").start()

    def _send_wishes(self) -> None:
        if self._proc is None or self._proc.stdin is None:
            return
        line = self._wishes()
        if line != self._sent:
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
                self._sent = line
            except OSError:  # it died: its reader reports why
                pass

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        self.latest = None  # a later subscriber must not take an old sample for a new one
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the sampler ends at the end of its stdin
        threading.Thread(target=_reap, args=(proc,), daemon=True, name="sampler-reap").start()

    # --- from subscriptions ------------------------------------------------------------------

    def _change(self, sub: Subscription, pids: Iterable[int]) -> None:
        with self._lock:
            sub.pids = frozenset(pids)
            if not sub.closed:
                self._send_wishes()

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.remove(sub)
            if self._subs:
                self._send_wishes()
            else:
                self._stop()

    def _wait(self, newer_than: float, timeout_s: float) -> MachineSample | None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while (s := self.latest) is None or s.t <= newer_than:
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is None and self.error is not None):
                    return None
                self._lock.wait(left)
            return s

    # --- on the reader threads ---------------------------------------------------------------

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                sample = MachineSample.from_json(line, time.monotonic())
            except (ValueError, KeyError, TypeError):
                continue
            with self._lock:
                if self._proc is proc:
                    self.latest = sample
                    self._lock.notify_all()
        proc.stdout.close()
        code = proc.wait()
        with self._lock:
            if self._proc is not proc:
                return  # stopped on purpose
            self._proc = None
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            last = f": {self._stderr_tail[-1]}" if self._stderr_tail else ""
            self.error = f"The live sampler ended unexpectedly (exit code {code}){last}."
            if self._subs and time.monotonic() - self._started_at > RESTART_AFTER_S:
                self._start()
            self._lock.notify_all()

    def _drain(self, stream: IO[bytes]) -> None:
        # Nothing should print; what does is kept for the error, and a full pipe would block the child.
        for line in stream:
            self._stderr_tail.append(line.decode("utf-8", "replace").strip()[:200])
        stream.close()


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_shared: SamplerClient | None = None
_shared_lock = threading.Lock()


def shared_sampler() -> SamplerClient:
    """The one sampler client of this process."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SamplerClient()
        return _shared

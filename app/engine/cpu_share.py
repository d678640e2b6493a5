"""How much of the CPU other programs took while a model process worked: a benchmark on a busy
machine measures the machine's load, not the model, and must not teach the advisor its speed.

Measured from the app's side as the machine's busy CPU time (``psutil.cpu_times``: all but idle,
iowait and guest time, which Linux also counts in user) less the model process's own and this
process's own, over the wall time and the logical CPUs.
"""

from __future__ import annotations

import time


def _busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    skipped = sum(getattr(t, k, 0.0) for k in ("iowait", "guest", "guest_nice"))
    return float(sum(t) - t.idle - skipped)


def _process_s(pid: int) -> float | None:
    import psutil

    try:
        user, system = psutil.Process(pid).cpu_times()[:2]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return float(user + system)


class OthersCpu:
    """``with OthersCpu(pid) as o: …`` then ``o.share``: other programs' share of all the CPUs
    during the block (0 to 1), or None when the model process could not be read at both ends."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.share: float | None = None

    def __enter__(self) -> OthersCpu:
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_s(), time.process_time()
        self._child0 = _process_s(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        child1 = _process_s(self.pid)  # before the process ends: its times go with it
        wall = time.monotonic() - self._t0
        if self._child0 is None or child1 is None or wall <= 0:
            return
        import psutil

        ours = (child1 - self._child0) + (time.process_time() - self._own0)
        theirs = (_busy_s() - self._busy0) - ours
        self.share = round(min(1.0, max(0.0, theirs / (wall * (psutil.cpu_count() or 1)))), 3)

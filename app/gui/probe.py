"""Event-loop latency probe: a timer that should fire every ``interval_ms``; the time beyond that
between two ticks is how long the GUI thread was busy — a stall the user feels as a frozen window.
Used by the responsiveness benchmark and the GUI tests."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallProbe(QObject):
    def __init__(self, interval_ms: int = 5) -> None:
        super().__init__()
        self.interval_s = interval_ms / 1000
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        return self.summary()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(max(0.0, now - self._last - self.interval_s))
        self._last = now

    def summary(self) -> dict[str, float]:
        if not self.gaps:
            return {"ticks": 0, "max_stall_ms": 0.0, "p99_stall_ms": 0.0}
        ordered = sorted(self.gaps)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {
            "ticks": len(ordered),
            "max_stall_ms": round(1000 * ordered[-1], 1),
            "p99_stall_ms": round(1000 * p99, 1),
        }

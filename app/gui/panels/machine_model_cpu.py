"""The model process's share of the CPU, for the Machine panel's CPU chart.

The chat's metrics carry the model process's memory, not its CPU time nor its pid, so the panel
finds the app's model processes itself: children of this process running the engine's worker
module (``python -m app.engine.worker``, or ``TailorLM --child app.engine.worker`` in the bundle).
Listing children reads every process's ``/proc/<pid>/stat`` (a few ms), so it is done only while no
model process is known; after that each reading is one ``/proc/<pid>/stat`` per process.
"""

from __future__ import annotations

from typing import Any

MODEL_WORKER = "app.engine.worker"  # the module app.engine.client starts the model process with


class ModelCpu:
    """``percent()``: the app's model processes' CPU use since the previous call, as a share of the
    whole machine (0-100, like the machine's own figure); None while no model process runs."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._n_cpus = psutil.cpu_count() or 1
        self._procs: dict[int, Any] = {}  # pid → psutil.Process, primed for cpu_percent

    def percent(self) -> float | None:
        """None also in the first call that finds a process: its reference point is set now."""
        if not self._procs:
            self._find()
            return None
        total, alive = 0.0, False
        for pid, proc in list(self._procs.items()):
            try:
                total += proc.cpu_percent(None)  # of one CPU, since the previous call
                alive = True
            except self._psutil.Error:  # it ended (a crash, an unload): find its successor next time
                del self._procs[pid]
        return min(100.0, total / self._n_cpus) if alive else None

    def _find(self) -> None:
        try:
            children = self._psutil.Process().children(recursive=False)
        except self._psutil.Error:
            return
        for child in children:
            try:
                if MODEL_WORKER in child.cmdline():
                    child.cpu_percent(None)  # the first call only sets the reference point
                    self._procs[child.pid] = child
            except self._psutil.Error:
                continue

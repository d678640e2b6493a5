"""Live memory of the model process, sampled from the app's side while it loads and answers.

Reads the child's resident set (psutil), system RAM in use, and — where NVML is present — the
VRAM the child holds and the device's used VRAM. Runs on its own thread at ``interval_s``; the
latest sample is read by the UI, the peaks are stored with the answer beside the prediction.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class MemorySample:
    t: float
    child_rss_bytes: int = 0
    system_used_bytes: int = 0
    child_vram_bytes: int | None = None  # None: no NVML / no NVIDIA GPU
    device_vram_used_bytes: int | None = None


class _Nvml:
    def __init__(self) -> None:
        self.ok = False
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nv: Any = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            self.ok = bool(self.handles)
        except Exception:  # no driver, no library, no GPU: VRAM stays None
            self.ok = False

    def sample(self, pid: int) -> tuple[int | None, int | None]:
        if not self.ok:
            return None, None
        child = used = 0
        for h in self.handles:
            with contextlib.suppress(Exception):
                used += int(self.nv.nvmlDeviceGetMemoryInfo(h).used)
                for proc in self.nv.nvmlDeviceGetComputeRunningProcesses(h):
                    if proc.pid == pid and proc.usedGpuMemory:
                        child += int(proc.usedGpuMemory)
        return child, used


class MemoryMonitor:
    def __init__(self, pid: int, *, interval_s: float = 0.1) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.latest = MemorySample(time.monotonic())
        self.peak = MemorySample(time.monotonic())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> MemorySample:
        import psutil

        try:
            rss = int(psutil.Process(self.pid).memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            rss = 0
        vm = psutil.virtual_memory()
        child_vram, dev_used = self._nvml.sample(self.pid)
        s = MemorySample(time.monotonic(), rss, int(vm.total - vm.available), child_vram, dev_used)
        self.latest = s
        self.peak = replace(
            self.peak,
            child_rss_bytes=max(self.peak.child_rss_bytes, rss),
            system_used_bytes=max(self.peak.system_used_bytes, s.system_used_bytes),
            child_vram_bytes=None if child_vram is None else max(self.peak.child_vram_bytes or 0, child_vram),
            device_vram_used_bytes=None
            if dev_used is None
            else max(self.peak.device_vram_used_bytes or 0, dev_used),
        )
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemoryMonitor:
        self._nvml = _Nvml()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-monitor")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        self.sample()

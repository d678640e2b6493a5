"""Live memory of the model process, sampled from the app's side while it loads and answers.

The child's resident set comes from psutil, here, at ``interval_s``; its VRAM and the GPUs' used
VRAM come from the machine's shared live sampler (:mod:`app.core.machine.sampler_client`), a
child process of its own that the Machine panel reads too — NVML never opens in this process.
The latest sample is read by the UI; the peaks are stored with the answer beside the prediction.

Unknown is not zero: VRAM that NVML cannot attribute to the process (containers, MIG, Windows
WDDM), or a process that could not be read, is None, never 0.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.machine.sampler import MachineSample
    from app.core.machine.sampler_client import SamplerClient, Subscription


@dataclass(frozen=True)
class MemorySample:
    t: float  # time.monotonic()
    child_rss_bytes: int | None = None  # None: not read yet, or the process is gone
    system_used_bytes: int | None = None
    child_vram_bytes: int | None = None  # None: no NVIDIA GPU, or NVML cannot attribute it
    device_vram_used_bytes: int | None = None  # all GPUs together; None: no GPU, or one unreadable


def _max(a: int | None, b: int | None) -> int | None:
    """The larger known figure: an unknown sample neither raises nor erases a peak."""
    return b if a is None else a if b is None else max(a, b)


def _gpu_vram(live: MachineSample | None, pid: int) -> tuple[int | None, int | None]:
    if live is None:
        return None, None
    used = [g.used_bytes for g in live.gpus]
    device = sum(u for u in used if u is not None) if used and None not in used else None
    return live.process_vram_bytes.get(pid), device


class MemoryMonitor:
    """``with MemoryMonitor(pid) as m:`` samples until the block ends; ``m.latest``, ``m.peak``."""

    def __init__(self, pid: int, *, interval_s: float = 0.1, sampler: SamplerClient | None = None) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.latest = MemorySample(time.monotonic())
        self.peak = MemorySample(time.monotonic())
        self._sampler = sampler  # None: the process's shared sampler
        self._subscription: Subscription | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> MemorySample:
        import psutil

        rss: int | None = None
        if self.pid > 0:
            try:
                rss = int(psutil.Process(self.pid).memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                rss = None
        vm = psutil.virtual_memory()
        live = self._subscription.latest if self._subscription is not None else None
        child_vram, dev_used = _gpu_vram(live, self.pid)
        s = MemorySample(time.monotonic(), rss, int(vm.total - vm.available), child_vram, dev_used)
        self.latest = s
        p = self.peak
        self.peak = MemorySample(
            p.t,
            _max(p.child_rss_bytes, s.child_rss_bytes),
            _max(p.system_used_bytes, s.system_used_bytes),
            _max(p.child_vram_bytes, s.child_vram_bytes),
            _max(p.device_vram_used_bytes, s.device_vram_used_bytes),
        )
        return s

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemoryMonitor:
        from app.core.machine.probe import no_gpu_here
        from app.core.machine.sampler_client import shared_sampler

        # No GPU (as the cached probe found): no VRAM to ask about, so no sampler child to start —
        # 0.16 s of CPU per answer on a 2-core laptop, for figures that would all be None.
        if self._sampler is not None or not no_gpu_here():
            sampler = self._sampler or shared_sampler()
            pids = (self.pid,) if self.pid > 0 else ()
            self._subscription = sampler.subscribe(interval_s=self.interval_s, pids=pids)
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="memory-monitor")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        self.sample()
        if self._subscription is not None:
            self._subscription.close()

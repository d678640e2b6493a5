"""The live sampler: ``python -m app.core.machine.sampler`` samples the whole machine every
interval and writes one JSON line per sample — RAM, CPU, each GPU's VRAM (NVML, amdgpu's sysfs)
and the VRAM of the processes the app asks about.

It runs as a child so that NVML is never opened in the window's process; the app's side is
:class:`app.core.machine.sampler_client.SamplerClient`, which every view shares. Protocol:

- the first argument, then stdin, one JSON line whenever the app's wishes change:
  ``{"interval_s": 1.0, "pids": [4242]}``; a new line wakes the sampler at once, so a newly
  watched process gets a sample right away.
  End of stdin (the app closed it, or died) ends the sampler.
- stdout, one line per sample: :meth:`MachineSample.to_json` without ``t``, which the app stamps
  on arrival with its own clock.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from app.core import runtime
from app.core.machine.gpus import GpuMemory, amd_memory
from app.core.machine.nvml import NvmlReader

MODULE = "app.core.machine.sampler"
DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.05  # NVML's process list costs ~1 ms per GPU; faster says nothing new


@dataclass(frozen=True)
class MachineSample:
    t: float  # time.monotonic() of the app's process when the sample arrived
    ram_used_bytes: int
    ram_total_bytes: int
    cpu_percent: float | None  # None in a sampler's first sample: psutil needs a reference point
    gpus: tuple[GpuMemory, ...] = ()
    # pid → VRAM it holds on all NVIDIA GPUs; only pids the app asked about; None: not attributable
    process_vram_bytes: Mapping[int, int | None] = field(default_factory=dict)

    def gpu(self, vendor: str, index: int) -> GpuMemory | None:
        return next((g for g in self.gpus if g.vendor == vendor and g.index == index), None)

    def to_json(self) -> str:
        d = asdict(self)
        del d["t"]
        d["process_vram_bytes"] = {str(k): v for k, v in self.process_vram_bytes.items()}
        return json.dumps(d)

    @classmethod
    def from_json(cls, line: str | bytes, t: float) -> MachineSample:
        """Raises ValueError, KeyError or TypeError on a line :meth:`to_json` did not write."""
        d = json.loads(line)
        return cls(
            t=t,
            ram_used_bytes=int(d["ram_used_bytes"]),
            ram_total_bytes=int(d["ram_total_bytes"]),
            cpu_percent=None if d["cpu_percent"] is None else float(d["cpu_percent"]),
            gpus=tuple(GpuMemory(**g) for g in d["gpus"]),
            process_vram_bytes={
                int(k): (None if v is None else int(v)) for k, v in d["process_vram_bytes"].items()
            },
        )


def take_sample(nvml: NvmlReader | None, pids: Iterable[int], *, first: bool) -> MachineSample:
    """One sample of this machine, in this process (the child's loop; tests call it directly)."""
    import psutil

    vm = psutil.virtual_memory()
    cpu = psutil.cpu_percent(None)  # since the previous call: the first one has no reference
    gpus = (nvml.memory() if nvml is not None else ()) + amd_memory()
    pids = [p for p in pids if p > 0]
    procs = nvml.process_vram(pids) if nvml is not None else dict.fromkeys(pids)
    return MachineSample(
        0.0, int(vm.total - vm.available), int(vm.total), None if first else cpu, gpus, procs
    )


class _Wishes:
    """What the app last asked for, read from stdin on a thread of its own."""

    def __init__(self) -> None:
        self.interval_s, self.pids = DEFAULT_INTERVAL_S, tuple[int, ...]()
        self.changed, self.ended = threading.Event(), threading.Event()

    def update(self, line: str) -> None:
        try:
            d: dict[str, Any] = json.loads(line)
            self.interval_s = max(MIN_INTERVAL_S, float(d.get("interval_s", self.interval_s)))
            self.pids = tuple(int(p) for p in d.get("pids", self.pids))
        except (ValueError, TypeError, AttributeError):
            return  # a line we do not understand changes nothing
        self.changed.set()

    def read(self, stream: Iterable[str]) -> None:
        for line in stream:
            self.update(line)
        self.ended.set()
        self.changed.set()


def main(argv: list[str] | None = None) -> int:
    wishes = _Wishes()
    for line in argv if argv is not None else sys.argv[1:]:
        wishes.update(line)
    threading.Thread(target=wishes.read, args=(sys.stdin,), daemon=True, name="sampler-stdin").start()
    out = runtime.private_stdout()
    nvml = NvmlReader.open()
    first = True
    try:
        while not wishes.ended.is_set():
            sample = take_sample(nvml, wishes.pids, first=first)
            first = False
            try:
                out.write(sample.to_json().encode() + b"\n")
            except (BrokenPipeError, OSError):
                break  # the app is gone
            wishes.changed.wait(wishes.interval_s)
            wishes.changed.clear()
    finally:
        if nvml is not None:
            nvml.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

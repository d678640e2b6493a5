"""A fake ``pynvml`` at the NVML boundary: the slice of nvidia-ml-py that TailorLM calls,
describing given GPUs and the processes on them. Put in ``sys.modules`` for this process, or on
a child's ``PYTHONPATH`` with :func:`child_env` for the probe and sampler children."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from app.core.units import MIB

ROOT = Path(__file__).resolve().parents[3]

H100 = {
    "name": "NVIDIA H100 80GB HBM3", "total": 81559 * MIB, "free": 80000 * MIB, "cc": (9, 0),
    "mem_clock_mhz": 2619, "bus_bits": 5120,
}  # fmt: skip
RTX_4090 = {
    "name": "NVIDIA GeForce RTX 4090", "total": 24564 * MIB, "free": 23000 * MIB, "cc": (8, 9),
    "mem_clock_mhz": 10501, "bus_bits": 384,
}  # fmt: skip
NOT_AVAILABLE = (1 << 64) - 1  # nvml.h NVML_VALUE_NOT_AVAILABLE, as old bindings passed it on


class FakeNVMLError(Exception):
    pass


class FakeNVML(types.ModuleType):
    """``gpus``: dicts as H100 above, plus optional ``procs`` / ``graphics``: [(pid, bytes or None)]
    — the compute and graphics process lists, None being what nvidia-ml-py gives for
    NVML_VALUE_NOT_AVAILABLE. ``failing``: names of calls that raise NVMLError."""

    NVMLError = FakeNVMLError
    NVML_CLOCK_MEM = 2
    nvmlMemory_v2 = 0x02000028  # nvml.h: NVML_STRUCT_VERSION(Memory, 2)

    def __init__(
        self, gpus: list[dict[str, Any]], *, init_fails: bool = False, failing: frozenset[str] = frozenset()
    ) -> None:
        super().__init__("pynvml")
        self.gpus, self.init_fails, self.failing = gpus, init_fails, failing
        self.shut_down = False

    def _call(self, fn: str) -> None:
        if fn in self.failing:
            raise FakeNVMLError(f"{fn}: Not Supported")

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise FakeNVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shut_down = True

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return "580.95.05"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        self._call("nvmlDeviceGetHandleByIndex")
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> str:
        self._call("nvmlDeviceGetName")
        return str(h["name"])

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any], version: object = None) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        # v1 counts the driver's reservation as used; v2 reports it apart (as a real H200 does)
        reserved = int(h.get("reserved", 0))
        used = int(h["total"]) - int(h["free"])
        if version is None:
            return SimpleNamespace(total=h["total"], free=h["free"], used=used)
        return SimpleNamespace(total=h["total"], free=h["free"], used=used - reserved, reserved=reserved)

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, Any]) -> object:
        self._call("nvmlDeviceGetCudaComputeCapability")
        return tuple(h["cc"])

    def nvmlDeviceGetMaxClockInfo(self, h: dict[str, Any], clock: int) -> object:
        self._call("nvmlDeviceGetMaxClockInfo")
        assert clock == self.NVML_CLOCK_MEM
        return h["mem_clock_mhz"]

    def nvmlDeviceGetMemoryBusWidth(self, h: dict[str, Any]) -> object:
        self._call("nvmlDeviceGetMemoryBusWidth")
        return h["bus_bits"]

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[SimpleNamespace]:
        self._call("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.get("procs", [])]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: dict[str, Any]) -> list[SimpleNamespace]:
        self._call("nvmlDeviceGetGraphicsRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.get("graphics", [])]


def child_pythonpath(tmp_path: Path, gpus: list[dict[str, Any]], **kwargs: Any) -> str:
    """A ``PYTHONPATH`` on which Python children import this fake as ``pynvml``, describing ``gpus``."""
    folder = tmp_path / "fake-nvml"
    folder.mkdir(exist_ok=True)
    spec = json.dumps({"gpus": gpus, "failing": sorted(kwargs.pop("failing", ())), **kwargs})
    (folder / "pynvml.py").write_text(
        "import json, sys\n"
        "from tests.core.machine.fake_nvml import FakeNVML\n"
        f"_spec = json.loads({spec!r})\n"
        "sys.modules[__name__] = FakeNVML(_spec.pop('gpus'), failing=frozenset(_spec.pop('failing')), **_spec)\n"
    )
    return os.pathsep.join([str(folder), str(ROOT)])

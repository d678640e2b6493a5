"""NVIDIA GPUs through NVML — the one module that opens it (``pynvml``, from nvidia-ml-py).

Two uses: :func:`detect_nvidia_gpus` for the machine profile (the probe child runs it), and
:class:`NvmlReader` for the live sampler child, which keeps NVML open and asks it every interval
how full each GPU is and how much VRAM given processes hold. Neither runs in the window's process:
opening NVML on a cold driver can take a second, and a laptop GPU asked a question wakes up.

A process's VRAM is often not attributable: in a container NVML lists host pids, under MIG and
Windows WDDM it reports NVML_VALUE_NOT_AVAILABLE. Then the answer is None — unknown — never 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from app.core.machine import bandwidth
from app.core.machine.gpus import GpuInfo, GpuMemory

# nvml.h: NVML_VALUE_NOT_AVAILABLE as an unsigned long long; bindings before 11.5 passed it on
# instead of turning it into None.
_NOT_AVAILABLE = (1 << 64) - 1


def _call(nvml: Any, fn: str, *args: object) -> Any:
    """One NVML call; None when it fails or these bindings are too old to have it."""
    try:
        return getattr(nvml, fn)(*args)
    except (nvml.NVMLError, AttributeError):
        return None


def _memory(nvml: Any, handle: Any) -> Any:
    """Memory info that counts as used only what programs hold: NVML's v2 struct. The default (v1)
    counts the driver's own reservation as used too (615 MiB of an idle H200, where nvidia-smi says 0;
    tests/gpu/results/h200-probe.json); drivers or bindings without v2 get v1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except (nvml.NVMLError, TypeError):
            pass
    return _call(nvml, "nvmlDeviceGetMemoryInfo", handle)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):  # nvidia-ml-py before 11.5 returned bytes
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else None


def _open() -> tuple[Any, str | None]:
    """(pynvml, None) once initialised, or (None, why not in a sentence)."""
    try:
        import pynvml
    except ImportError:
        return None, "NVML not available: the nvidia-ml-py package is not installed."
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return None, f"NVML not available: no NVIDIA driver ({e})."
    return pynvml, None


def _close(nvml: Any) -> None:
    with contextlib.suppress(nvml.NVMLError):
        nvml.nvmlShutdown()


def _handles(nvml: Any) -> list[Any]:
    count = _call(nvml, "nvmlDeviceGetCount") or 0
    return [_call(nvml, "nvmlDeviceGetHandleByIndex", i) for i in range(count)]


def _nvidia_gpu(nvml: Any, index: int, handle: Any, driver: str | None) -> GpuInfo:
    def ask(fn: str, *args: object) -> Any:
        return _call(nvml, fn, handle, *args) if handle is not None else None

    name, mem = _text(ask("nvmlDeviceGetName")), _memory(nvml, handle) if handle is not None else None
    cc = ask("nvmlDeviceGetCudaComputeCapability")
    clock = ask("nvmlDeviceGetMaxClockInfo", getattr(nvml, "NVML_CLOCK_MEM", 2))  # nvml.h: NVML_CLOCK_MEM = 2
    bus = ask("nvmlDeviceGetMemoryBusWidth")
    # The link as trained at its best (an idle link drops to Gen 1 to save power); the width as it is.
    gen, width = ask("nvmlDeviceGetMaxPcieLinkGeneration"), ask("nvmlDeviceGetCurrPcieLinkWidth")
    return GpuInfo(
        index=index,
        name=name or f"NVIDIA GPU {index}",
        vendor="nvidia",
        backend="cuda",
        vram_total_bytes=int(mem.total) if mem is not None else None,
        vram_free_bytes=int(mem.free) if mem is not None else None,
        driver_version=driver,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc is not None else None,
        bandwidth_bytes_s=bandwidth.nvidia_bandwidth_bytes_s(int(clock), int(bus)) if clock and bus else None,
        host_link_bytes_s=bandwidth.pcie_bytes_s(int(gen), int(width)) if gen and width else None,
    )


def detect_nvidia_gpus() -> tuple[tuple[GpuInfo, ...], tuple[str, ...]]:
    """Every NVIDIA GPU NVML sees, and notes; no driver or no GPU is normal, not an error."""
    nvml, why = _open()
    if nvml is None:
        return (), (why or "NVML not available.",)
    try:
        if _call(nvml, "nvmlDeviceGetCount") is None:  # not "no GPU": NVML could not say
            return (), ("NVML could not count the NVIDIA GPUs.",)
        driver = _text(_call(nvml, "nvmlSystemGetDriverVersion"))
        gpus = tuple(_nvidia_gpu(nvml, i, h, driver) for i, h in enumerate(_handles(nvml)))
    finally:
        _close(nvml)
    return gpus, () if gpus else ("NVML found no NVIDIA GPU.",)


def _process_vram_on(nvml: Any, handle: Any, pid: int) -> tuple[bool, int | None]:
    """(listed, bytes) for ``pid`` on one GPU; bytes None when the driver cannot say.

    A process using the GPU through CUDA is in the compute list, through Vulkan or OpenGL in the
    graphics list; a "C+G" process is in both with the same figure, so the larger one is taken.
    """
    compute = _call(nvml, "nvmlDeviceGetComputeRunningProcesses", handle)
    if compute is None:  # the list itself failed: whether pid is there is unknown
        return True, None
    graphics = _call(nvml, "nvmlDeviceGetGraphicsRunningProcesses", handle) or []
    figures = [p.usedGpuMemory for p in (*compute, *graphics) if p.pid == pid]
    if not figures:
        return False, None
    if any(f is None or int(f) == _NOT_AVAILABLE for f in figures):
        return True, None
    return True, max(int(f) for f in figures)


class NvmlReader:
    """NVML kept open for repeated samples; :meth:`open` returns None where there is no NVML."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml, self._handles = nvml, handles

    @classmethod
    def open(cls) -> NvmlReader | None:
        nvml, _ = _open()
        return cls(nvml, _handles(nvml)) if nvml is not None else None

    def memory(self) -> tuple[GpuMemory, ...]:
        """Used, total and free VRAM of each NVIDIA GPU, now."""
        out = []
        for i, handle in enumerate(self._handles):
            mem = _memory(self._nvml, handle) if handle is not None else None
            if mem is None:
                out.append(GpuMemory("nvidia", i, None, None, None))
            else:
                out.append(GpuMemory("nvidia", i, int(mem.used), int(mem.total), int(mem.free)))
        return tuple(out)

    def process_vram(self, pids: Iterable[int]) -> dict[int, int | None]:
        """VRAM each process holds on all NVIDIA GPUs together; None where NVML cannot attribute it.

        Not listed on any GPU is None too: NVML leaves out processes of another pid namespace
        (containers) and, under MIG, processes it cannot see — so absence does not prove zero.
        """
        out: dict[int, int | None] = {}
        for pid in pids:
            total, listed, known = 0, False, True
            for handle in self._handles:
                if handle is None:
                    known = False
                    continue
                on_gpu, used = _process_vram_on(self._nvml, handle, pid)
                listed |= on_gpu
                if on_gpu and used is None:
                    known = False
                total += used or 0
            out[pid] = total if listed and known else None
        return out

    def close(self) -> None:
        _close(self._nvml)

"""The machine profile: what this machine offers a language model — CPU, RAM, GPUs, and what the
installed llama.cpp build can offload to — and "what if" overrides of it.

:func:`detect_machine` gathers it from the concern modules beside this one: :mod:`cpu`,
:mod:`gpus` (AMD, Apple), :mod:`bandwidth`, and :mod:`probe`, the child process that asks NVML
and llama.cpp (cached). It never raises for a missing GPU, driver or library: each absence
becomes a sentence in ``MachineProfile.notes``. :func:`apply_overrides` answers "what if I had
16 GB of RAM and an 8 GB GPU?".
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import psutil

from app.core.errors import HardwareError
from app.core.machine import bandwidth, probe
from app.core.machine.cpu import CpuInfo, SysctlReader, darwin_sysctl_reader, detect_cpu
from app.core.machine.gpus import DRM_ROOT, GpuInfo, apple_gpu_share_bytes, detect_amd_gpus, detect_apple_gpu
from app.core.machine.offload import OffloadSupport
from app.core.units import GIB, format_bytes

# The profile's parts, for importers of this module (``from app.core.machine.hardware import …``).
__all__ = [
    "CpuInfo", "GpuInfo", "MachineProfile", "OffloadSupport", "apply_overrides", "detect_amd_gpus",
    "detect_machine",
]  # fmt: skip

# "What if" RAM: the OS, desktop and browser keep some; we assume 25 % of RAM, at most 2 GiB
# (our assumption: a fresh 8 GB laptop shows ~6 GB available, a 32 GB one ~30 GB).
OS_RESERVE_FRACTION = 0.25
OS_RESERVE_MAX_BYTES = 2 * GIB
# A hypothetical GPU with no bandwidth given: RTX 4060 Laptop GPU, the common 8 GB laptop card
# (NVIDIA spec: 128-bit GDDR6 at 16 Gbps = 256 GB/s).
HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S = 256e9
HYPOTHETICAL_GPU_NAME = "hypothetical GPU"


@dataclass(frozen=True)
class MachineProfile:
    cpu: CpuInfo
    ram_total_bytes: int
    ram_available_bytes: int
    ram_bandwidth_bytes_s: float
    gpus: tuple[GpuInfo, ...]
    offload: OffloadSupport
    notes: tuple[str, ...] = ()  # what could not be detected, in sentences for the user
    overrides: tuple[str, ...] = ()  # "what if" changes, one per overridden figure
    ram_bandwidth_measured: bool = False  # False: a default or an override, not this machine

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: nested dicts and lists, sizes as int bytes (``tailorlm hw --json``)."""
        return cast(dict[str, Any], _plain(asdict(self)))


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def detect_machine(
    *,
    measure_bandwidth: bool = True,
    remeasure_bandwidth: bool = False,
    reprobe: bool = False,
    devices: probe.DeviceReport | None = None,
    sysfs_root: Path = DRM_ROOT,
    sysctl: SysctlReader | None = None,
) -> MachineProfile:
    """Everything the advisor needs about this machine (< 1 s once bandwidth and the probe are cached).

    ``measure_bandwidth=False`` uses the cached RAM bandwidth or a default, never measuring;
    ``remeasure_bandwidth=True`` measures again and replaces the cached figure. NVIDIA GPUs and
    the llama.cpp build come from the probe child (:func:`probe.probe_devices`, cached; ``reprobe``
    asks again) unless ``devices`` is given — tests pass :func:`probe.detect_devices` to ask in
    this process.
    """
    system, arch = platform.system(), platform.machine()
    if sysctl is None and system == "Darwin":
        sysctl = darwin_sysctl_reader()
    cpu = detect_cpu(system=system, sysctl=sysctl)
    vm = psutil.virtual_memory()
    notes: list[str] = []
    bw = bandwidth.ram_bandwidth(cpu.model, vm.total, measure=measure_bandwidth, force=remeasure_bandwidth)
    if not bw.measured:
        notes.append(f"RAM bandwidth not measured: assuming {bw.bytes_s / 1e9:.0f} GB/s.")
    devices = devices or probe.probe_devices(refresh=reprobe)
    gpus, offload = devices.nvidia_gpus, devices.offload
    notes += devices.notes
    if system == "Linux":
        gpus += detect_amd_gpus(sysfs_root)
    elif system == "Windows":
        notes.append("On Windows only NVIDIA GPUs are detected.")
    if system == "Darwin" and arch == "arm64" and sysctl is not None:
        apple, note = detect_apple_gpu(cpu, vm.total, vm.available, sysctl=sysctl)
        metal = next((d for d in offload.devices if d.backend == "Metal" and d.memory_total_bytes), None)
        if metal is not None and metal.memory_total_bytes is not None:  # Metal's own figure beats ours
            share = metal.memory_total_bytes
            apple = replace(apple, vram_total_bytes=share, vram_free_bytes=min(share, vm.available))
            note = "GPU memory limit from Metal's recommendedMaxWorkingSetSize."
        gpus += (apple,)
        notes.append(note)
    if gpus and offload.installed and not offload.build_supports_gpu:
        notes.append(
            "The installed llama.cpp build is CPU-only: it cannot use the GPU until a GPU build is installed."
        )
    return MachineProfile(
        cpu=cpu,
        ram_total_bytes=int(vm.total),
        ram_available_bytes=int(vm.available),
        ram_bandwidth_bytes_s=bw.bytes_s,
        gpus=gpus,
        offload=offload,
        notes=tuple(notes),
        ram_bandwidth_measured=bw.measured,
    )


def apply_overrides(
    profile: MachineProfile,
    *,
    ram_bytes: int | None = None,
    ram_available_bytes: int | None = None,
    vram_bytes: int | None = None,
    gpu_name: str | None = None,
    ram_bandwidth_bytes_s: float | None = None,
    gpu_bandwidth_bytes_s: float | None = None,
) -> MachineProfile:
    """The profile as if the machine had these figures; each change is listed in ``overrides``.

    ``ram_bytes`` without ``ram_available_bytes`` leaves what the OS keeps (25 %, at most 2 GiB)
    unavailable. ``vram_bytes`` replaces the first GPU's total and free VRAM, or adds a
    hypothetical NVIDIA GPU when there is none; either way plans may then offload.
    """
    for label, v in (("RAM", ram_bytes), ("available RAM", ram_available_bytes), ("VRAM", vram_bytes),
                     ("RAM bandwidth", ram_bandwidth_bytes_s), ("GPU bandwidth", gpu_bandwidth_bytes_s)):  # fmt: skip
        if v is not None and v <= 0:
            raise HardwareError(f"The {label} override must be more than zero.", hint="Write it like 16GB.")
    if (
        vram_bytes is None
        and not profile.gpus
        and (gpu_name is not None or gpu_bandwidth_bytes_s is not None)
    ):
        raise HardwareError(
            "This machine has no GPU to change.", hint="Give a VRAM size to plan with a hypothetical GPU."
        )
    p, done, notes = profile, list(profile.overrides), list(profile.notes)
    if ram_bytes is not None or ram_available_bytes is not None:
        total = ram_bytes or p.ram_total_bytes
        available = ram_available_bytes or (
            total - min(OS_RESERVE_MAX_BYTES, int(total * OS_RESERVE_FRACTION))
            if ram_bytes
            else p.ram_available_bytes
        )
        if available > total:
            raise HardwareError(
                f"Available RAM ({format_bytes(available)}) cannot exceed total RAM ({format_bytes(total)}).",
                hint="Give a smaller available RAM or a larger total.",
            )
        if ram_bytes is not None:
            done.append(f"ram_bytes: {format_bytes(total)} (was {format_bytes(p.ram_total_bytes)})")
        done.append(
            f"ram_available_bytes: {format_bytes(available)} (was {format_bytes(p.ram_available_bytes)})"
        )
        p = replace(p, ram_total_bytes=total, ram_available_bytes=available)
        if p.gpus and p.gpus[0].unified_memory and vram_bytes is None:  # a Mac's GPU share follows its RAM
            share = apple_gpu_share_bytes(total)
            p = _with_first_gpu(p, vram_total_bytes=share, vram_free_bytes=min(share, available))
    if ram_bandwidth_bytes_s is not None:
        done.append(
            f"ram_bandwidth_bytes_s: {_gb_s(ram_bandwidth_bytes_s)} (was {_gb_s(p.ram_bandwidth_bytes_s)})"
        )
        p = replace(p, ram_bandwidth_bytes_s=float(ram_bandwidth_bytes_s), ram_bandwidth_measured=False)
    if vram_bytes is not None:
        if p.gpus:
            done.append(
                f"vram_bytes: {format_bytes(vram_bytes)} on {p.gpus[0].name} (was {_fmt(p.gpus[0].vram_total_bytes)})"
            )
            p = _with_first_gpu(p, vram_total_bytes=vram_bytes, vram_free_bytes=vram_bytes)
        else:
            done.append(
                f"vram_bytes: {format_bytes(vram_bytes)} on a {HYPOTHETICAL_GPU_NAME} (none detected)"
            )
            gpu = GpuInfo(0, HYPOTHETICAL_GPU_NAME, "nvidia", "cuda", vram_bytes, vram_bytes,
                          bandwidth_bytes_s=HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S, hypothetical=True)  # fmt: skip
            p = replace(p, gpus=(gpu,))
            if not p.offload.build_supports_gpu:
                notes.append("The plan assumes a GPU build of llama.cpp; the installed one cannot offload.")
        p = replace(p, offload=replace(p.offload, supported=True))
    if gpu_name is not None:
        done.append(f"gpu_name: {gpu_name} (was {p.gpus[0].name})")
        p = _with_first_gpu(p, name=gpu_name)
    if gpu_bandwidth_bytes_s is not None:
        old = p.gpus[0].bandwidth_bytes_s
        done.append(
            f"gpu_bandwidth_bytes_s: {_gb_s(gpu_bandwidth_bytes_s)} (was {_gb_s(old) if old else 'unknown'})"
        )
        p = _with_first_gpu(p, bandwidth_bytes_s=float(gpu_bandwidth_bytes_s))
    return replace(p, overrides=tuple(done), notes=tuple(notes))


def _with_first_gpu(p: MachineProfile, **changes: Any) -> MachineProfile:
    return replace(p, gpus=(replace(p.gpus[0], **changes), *p.gpus[1:]))


def _fmt(n: int | None) -> str:
    return format_bytes(n) if n is not None else "unknown"


def _gb_s(bytes_s: float) -> str:
    return f"{bytes_s / 1e9:.1f} GB/s"

"""GPUs as the advisor sees them: :class:`GpuInfo` (what a card is) and :class:`GpuMemory` (how
full it is now), with the detectors that need no vendor library — AMD from amdgpu's sysfs files,
the Apple GPU from ``sysctl``. NVIDIA GPUs come from NVML in :mod:`app.core.machine.nvml`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.core.machine import bandwidth
from app.core.machine.cpu import CpuInfo, SysctlReader
from app.core.units import GIB, MIB

DRM_ROOT = Path("/sys/class/drm")
AMD_PCI_VENDOR = "0x1002"  # PCI-SIG vendor id of AMD/ATI


@dataclass(frozen=True)
class GpuInfo:
    index: int  # within its vendor's enumeration (NVML index, DRM card order)
    name: str
    vendor: str  # "nvidia" | "amd" | "apple"
    backend: str  # the llama.cpp backend that drives it: "cuda" | "rocm" | "metal"
    vram_total_bytes: int | None
    vram_free_bytes: int | None
    driver_version: str | None = None
    compute_capability: str | None = None  # NVIDIA: "9.0"
    bandwidth_bytes_s: float | None = None
    unified_memory: bool = False  # Apple: "VRAM" is a share of RAM, not memory on top of it
    host_link_bytes_s: float | None = None  # NVIDIA: the PCIe link to the host, one direction
    hypothetical: bool = False  # added by apply_overrides


@dataclass(frozen=True)
class GpuMemory:
    """One GPU's memory at one moment; None where the driver could not say."""

    vendor: str  # "nvidia" | "amd", as GpuInfo.vendor
    index: int  # as GpuInfo.index
    used_bytes: int | None
    total_bytes: int | None
    free_bytes: int | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


def _iterdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


def detect_amd_gpus(sysfs_root: Path = DRM_ROOT) -> tuple[GpuInfo, ...]:
    """AMD GPUs driven by amdgpu, from ``<sysfs_root>/card*/device/mem_info_vram_*`` (Linux)."""
    cards = sorted(
        (int(m.group(1)), p) for p in _iterdir(sysfs_root) if (m := re.fullmatch(r"card(\d+)", p.name))
    )  # skips connectors such as card0-DP-1
    gpus: list[GpuInfo] = []
    for _, card in cards:
        dev = card / "device"
        total = _read_int(dev / "mem_info_vram_total")
        if _read(dev / "vendor") != AMD_PCI_VENDOR or total is None:
            continue
        used = _read_int(dev / "mem_info_vram_used")
        pci_device = (_read(dev / "device") or "?").removeprefix("0x")
        gpus.append(
            GpuInfo(
                index=len(gpus),
                name=_read(dev / "product_name") or f"AMD GPU [1002:{pci_device}]",
                vendor="amd",
                backend="rocm",
                vram_total_bytes=total,
                vram_free_bytes=max(0, total - used) if used is not None else None,
            )
        )
    return tuple(gpus)


def amd_memory(sysfs_root: Path = DRM_ROOT) -> tuple[GpuMemory, ...]:
    """Each AMD GPU's VRAM now: a few small sysfs reads per card, cheap enough for every sample."""
    return tuple(
        GpuMemory(
            "amd",
            g.index,
            None
            if g.vram_free_bytes is None or g.vram_total_bytes is None
            else g.vram_total_bytes - g.vram_free_bytes,
            g.vram_total_bytes,
            g.vram_free_bytes,
        )
        for g in detect_amd_gpus(sysfs_root)
    )


def apple_gpu_share_bytes(ram_total_bytes: int) -> int:
    """Approximate Metal ``recommendedMaxWorkingSetSize`` when we cannot ask Metal.

    llama.cpp logs it at start-up; users' logs show 2/3 of RAM on 16 and 32 GiB Macs
    (llama-cpp-python #687: 10922.67 MiB; ollama #434: 21845.34 MiB) and 3/4 from 36 GiB up
    (28991.03 MB on 36 GiB; llama.cpp #1870: 49152 MiB on 64 GiB; #3213: 73728 MiB on 96 GiB).
    An approximation: macOS 26 gives 128 GiB Macs 84 % (antirez/ds4 #893), so we under-promise there.
    """
    fraction = 3 / 4 if ram_total_bytes >= 36 * GIB else 2 / 3
    return int(ram_total_bytes * fraction)


def detect_apple_gpu(
    cpu: CpuInfo, ram_total_bytes: int, ram_available_bytes: int, *, sysctl: SysctlReader
) -> tuple[GpuInfo, str]:
    """The Apple Silicon GPU (unified memory) and a note on where its memory limit came from."""
    wired_mb = (sysctl("iogpu.wired_limit_mb") or "0").strip()
    if wired_mb.isdigit() and int(wired_mb) > 0:  # 0 means "macOS default"
        share, note = int(wired_mb) * MIB, f"GPU memory limit set by iogpu.wired_limit_mb = {wired_mb}."
    else:
        share = apple_gpu_share_bytes(ram_total_bytes)
        note = "GPU memory limit approximated as Metal's default share of RAM (2/3, or 3/4 from 36 GiB)."
    gpu = GpuInfo(
        index=0,
        name=cpu.model or "Apple GPU",
        vendor="apple",
        backend="metal",
        vram_total_bytes=share,
        vram_free_bytes=min(share, ram_available_bytes),  # the share only exists while RAM is free
        bandwidth_bytes_s=bandwidth.apple_gpu_bandwidth_bytes_s(cpu.model, cpu.physical_cores),
        unified_memory=True,
    )
    return gpu, note

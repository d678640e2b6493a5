"""AMD GPUs through a fake sysfs tree and the Apple GPU through an injected sysctl."""

from __future__ import annotations

from pathlib import Path

from app.core.machine import bandwidth
from app.core.machine.cpu import CpuInfo
from app.core.machine.gpus import (
    GpuMemory,
    amd_memory,
    apple_gpu_share_bytes,
    detect_amd_gpus,
    detect_apple_gpu,
)
from app.core.units import GIB, MIB
from tests.core.machine.test_cpu import APPLE_SYSCTL


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_amd_gpus_from_sysfs(tmp_path: Path) -> None:
    card = tmp_path / "card0" / "device"
    _write(card / "vendor", "0x1002\n")
    _write(card / "device", "0x744c\n")
    _write(card / "mem_info_vram_total", f"{24 * GIB}\n")
    _write(card / "mem_info_vram_used", f"{3 * GIB}\n")
    _write(card / "product_name", "AMD Radeon RX 7900 XTX\n")
    (tmp_path / "card0-DP-1").mkdir()  # a connector, not a card
    _write(tmp_path / "card1" / "device" / "vendor", "0x8086\n")  # Intel iGPU: not amdgpu
    second = tmp_path / "card10" / "device"  # sorts after card2 numerically, before it as text
    _write(second / "vendor", "0x1002\n")
    _write(second / "device", "0x73ff\n")
    _write(second / "mem_info_vram_total", f"{8 * GIB}\n")
    _write(second / "mem_info_vram_used", "0\n")
    _write(second / "product_name", "\n")  # empty on many consumer boards
    third = tmp_path / "card2" / "device"
    _write(third / "vendor", "0x1002\n")
    _write(third / "mem_info_vram_total", f"{512 * MIB}\n")  # an APU's carve-out; no used file

    gpus = detect_amd_gpus(tmp_path)
    assert [g.index for g in gpus] == [0, 1, 2]
    xtx, apu, rx = gpus
    assert xtx.name == "AMD Radeon RX 7900 XTX" and xtx.vendor == "amd" and xtx.backend == "rocm"
    assert xtx.vram_total_bytes == 24 * GIB and xtx.vram_free_bytes == 21 * GIB
    assert apu.vram_total_bytes == 512 * MIB and apu.vram_free_bytes is None
    assert rx.name == "AMD GPU [1002:73ff]" and rx.vram_free_bytes == 8 * GIB
    assert detect_amd_gpus(tmp_path / "missing") == ()
    # live: the card without a "used" file has unknown use, not zero
    assert amd_memory(tmp_path) == (
        GpuMemory("amd", 0, 3 * GIB, 24 * GIB, 21 * GIB),
        GpuMemory("amd", 1, None, 512 * MIB, None),
        GpuMemory("amd", 2, 0, 8 * GIB, 8 * GIB),
    )


def test_apple_gpu_share_of_unified_memory() -> None:
    cpu = CpuInfo("Apple M2 Pro", "arm64", 12, 12, ("NEON",))
    gpu, note = detect_apple_gpu(cpu, 16 * GIB, 10 * GIB, sysctl=APPLE_SYSCTL.get)
    assert gpu.vendor == "apple" and gpu.backend == "metal" and gpu.unified_memory
    assert gpu.vram_total_bytes == 16 * GIB * 2 // 3  # Metal's default: 10922.67 MiB on 16 GiB
    assert gpu.vram_free_bytes == 10 * GIB  # no more than the RAM that is free
    assert gpu.bandwidth_bytes_s == 200e9 and "approximated" in note
    wired = {**APPLE_SYSCTL, "iogpu.wired_limit_mb": "14336"}
    gpu, note = detect_apple_gpu(cpu, 16 * GIB, 15 * GIB, sysctl=wired.get)
    assert gpu.vram_total_bytes == 14 * GIB and gpu.vram_free_bytes == 14 * GIB and "wired_limit" in note
    zero = {**APPLE_SYSCTL, "iogpu.wired_limit_mb": "0"}  # 0 = macOS default
    assert detect_apple_gpu(cpu, 64 * GIB, 60 * GIB, sysctl=zero.get)[0].vram_total_bytes == 48 * GIB


def test_apple_share_and_bandwidth_tables() -> None:
    assert apple_gpu_share_bytes(32 * GIB) == 32 * GIB * 2 // 3  # 21845.34 MiB in users' logs
    assert apple_gpu_share_bytes(36 * GIB) == 27 * GIB  # 28991.03 MB
    assert apple_gpu_share_bytes(96 * GIB) == 72 * GIB  # 73728 MiB
    assert bandwidth.apple_gpu_bandwidth_bytes_s("Apple M3 Max", 16) == 400e9
    assert bandwidth.apple_gpu_bandwidth_bytes_s("Apple M3 Max", 14) == 300e9
    assert bandwidth.apple_gpu_bandwidth_bytes_s("Apple M3 Max") == 300e9
    assert bandwidth.apple_gpu_bandwidth_bytes_s("Apple M1") == 68.25e9
    assert bandwidth.apple_gpu_bandwidth_bytes_s("Apple M9 Hyper") is None

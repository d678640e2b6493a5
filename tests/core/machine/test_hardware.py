"""The machine profile on this real machine (NVML and llama.cpp asked by the probe child, or in
this process through a fake NVML at the pynvml boundary), and "what if" overrides of it."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from app.core.errors import HardwareError
from app.core.machine import bandwidth, probe
from app.core.machine.cpu import CpuInfo
from app.core.machine.gpus import detect_amd_gpus, detect_apple_gpu
from app.core.machine.hardware import (
    HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S,
    MachineProfile,
    OffloadSupport,
    apply_overrides,
    detect_machine,
)
from app.core.machine.nvml import detect_nvidia_gpus
from app.core.units import GIB
from tests.core.machine.fake_nvml import H100, RTX_4090, FakeNVML
from tests.core.machine.test_cpu import APPLE_SYSCTL


def _profile(**changes: object) -> MachineProfile:
    base = MachineProfile(
        cpu=CpuInfo("Test CPU", "x86_64", 8, 16, ("AVX", "AVX2")),
        ram_total_bytes=32 * GIB,
        ram_available_bytes=20 * GIB,
        ram_bandwidth_bytes_s=50e9,
        gpus=(),
        offload=OffloadSupport(supported=False, build_supports_gpu=False, installed=True),
        ram_bandwidth_measured=True,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _no_gpu_here() -> bool:
    return shutil.which("nvidia-smi") is None and not detect_amd_gpus()


# --- this machine ------------------------------------------------------------------------------


def test_detect_machine_describes_this_machine() -> None:
    p = detect_machine(measure_bandwidth=False)
    vm = psutil.virtual_memory()
    assert p.ram_total_bytes == vm.total
    assert abs(p.ram_available_bytes - vm.available) < 1 * GIB
    assert p.cpu.logical_cores >= 1 and 1 <= p.cpu.physical_cores <= p.cpu.logical_cores
    assert p.cpu.arch == platform.machine() and p.cpu.model
    json.dumps(p.to_dict())
    # the private TAILORLM_HOME has no cached figure and we asked not to measure
    assert not p.ram_bandwidth_measured and any("bandwidth not measured" in n for n in p.notes)
    if _no_gpu_here():
        assert p.gpus == ()
        assert any("NVML" in n or "no NVIDIA GPU" in n for n in p.notes)


def test_detect_machine_is_fast_once_bandwidth_and_probe_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", lambda **_: 21e9)
    detect_machine()  # measures (the stand-in) and caches; the probe child answers and is cached
    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", lambda **_: pytest.fail("re-measured"))
    start = time.perf_counter()
    p = detect_machine()
    assert time.perf_counter() - start < 1.0
    assert p.ram_bandwidth_bytes_s == 21e9 and p.ram_bandwidth_measured


def test_detect_machine_with_fake_nvidia_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([RTX_4090]))
    p = detect_machine(
        measure_bandwidth=False, devices=probe.detect_devices(), sysfs_root=tmp_path / "no-drm"
    )
    assert [g.name for g in p.gpus] == ["NVIDIA GeForce RTX 4090"]
    if p.offload.installed and not p.offload.build_supports_gpu:  # this machine's CPU-only wheel
        assert any("CPU-only" in n for n in p.notes)
    assert json.loads(json.dumps(p.to_dict()))["gpus"][0]["compute_capability"] == "8.9"


# --- overrides -----------------------------------------------------------------------------------


def test_ram_override_leaves_the_os_its_share() -> None:
    p = apply_overrides(_profile(), ram_bytes=16 * GIB)
    assert p.ram_total_bytes == 16 * GIB and p.ram_available_bytes == 14 * GIB  # 2 GiB cap
    small = apply_overrides(_profile(), ram_bytes=4 * GIB)
    assert small.ram_available_bytes == 3 * GIB  # 25 % below 8 GiB
    both = apply_overrides(_profile(), ram_bytes=16 * GIB, ram_available_bytes=9 * GIB)
    assert both.ram_available_bytes == 9 * GIB
    assert any(o.startswith("ram_bytes:") for o in p.overrides)
    with pytest.raises(HardwareError):
        apply_overrides(_profile(), ram_bytes=8 * GIB, ram_available_bytes=12 * GIB)
    with pytest.raises(HardwareError):
        apply_overrides(_profile(), vram_bytes=0)


def test_vram_override_without_gpu_adds_a_hypothetical_one() -> None:
    p = apply_overrides(_profile(), vram_bytes=8 * GIB)
    (gpu,) = p.gpus
    assert gpu.hypothetical and gpu.vendor == "nvidia" and gpu.backend == "cuda"
    assert gpu.vram_total_bytes == gpu.vram_free_bytes == 8 * GIB
    assert gpu.bandwidth_bytes_s == HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S
    assert p.offload.supported and not p.offload.build_supports_gpu
    assert any("cannot offload" in n for n in p.notes)
    assert any("vram" in o for o in p.overrides)
    named = apply_overrides(
        _profile(), vram_bytes=8 * GIB, gpu_name="RTX 4060 Laptop", gpu_bandwidth_bytes_s=272e9
    )
    assert named.gpus[0].name == "RTX 4060 Laptop" and named.gpus[0].bandwidth_bytes_s == 272e9
    with pytest.raises(HardwareError):
        apply_overrides(_profile(), gpu_name="RTX 4060")


def test_vram_override_replaces_the_first_real_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100, RTX_4090]))
    gpus, _ = detect_nvidia_gpus()
    base = _profile(gpus=gpus, offload=OffloadSupport(True, True, True, ("CUDA",)))
    p = apply_overrides(base, vram_bytes=8 * GIB, ram_bandwidth_bytes_s=80e9)
    assert p.gpus[0].vram_total_bytes == p.gpus[0].vram_free_bytes == 8 * GIB
    assert p.gpus[0].name == H100["name"] and p.gpus[0].compute_capability == "9.0"
    assert p.gpus[1] == gpus[1]
    assert p.ram_bandwidth_bytes_s == 80e9 and not p.ram_bandwidth_measured
    assert len(p.overrides) == 2 and p.notes == ()


def test_ram_override_on_a_mac_resizes_the_gpu_share() -> None:
    cpu = CpuInfo("Apple M2 Pro", "arm64", 12, 12, ("NEON",))
    apple, _ = detect_apple_gpu(cpu, 32 * GIB, 20 * GIB, sysctl=APPLE_SYSCTL.get)
    p = apply_overrides(_profile(cpu=cpu, gpus=(apple,)), ram_bytes=16 * GIB)
    share = 16 * GIB * 2 // 3
    assert p.gpus[0].vram_total_bytes == p.gpus[0].vram_free_bytes == share  # 14 GiB of RAM free


def test_to_dict_round_trips_through_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([RTX_4090]))
    p = detect_machine(measure_bandwidth=False, devices=probe.detect_devices())
    p = apply_overrides(p, ram_bytes=16 * GIB, vram_bytes=8 * GIB)
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["ram_total_bytes"] == 16 * GIB and isinstance(d["gpus"][0]["vram_total_bytes"], int)
    assert d["offload"]["supported"] is True and d["overrides"] == list(p.overrides)

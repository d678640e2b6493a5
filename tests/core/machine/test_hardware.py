"""Hardware detection on this real machine, with fakes only at the NVML, sysfs and sysctl boundaries."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
import types
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from app.core.errors import HardwareError
from app.core.machine import bandwidth
from app.core.machine.hardware import (
    HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S,
    CpuInfo,
    GpuInfo,
    MachineProfile,
    OffloadSupport,
    apple_gpu_share_bytes,
    apply_overrides,
    detect_amd_gpus,
    detect_apple_gpu,
    detect_cpu,
    detect_machine,
    detect_nvidia_gpus,
    detect_offload,
)
from app.core.units import GIB, MIB

# --- fakes at the boundaries -------------------------------------------------------------------

H100 = {
    "name": "NVIDIA H100 80GB HBM3", "total": 81559 * MIB, "free": 80000 * MIB, "cc": (9, 0),
    "mem_clock_mhz": 2619, "bus_bits": 5120,
}  # fmt: skip
RTX_4090 = {
    "name": "NVIDIA GeForce RTX 4090", "total": 24564 * MIB, "free": 23000 * MIB, "cc": (8, 9),
    "mem_clock_mhz": 10501, "bus_bits": 384,
}  # fmt: skip


class FakeNVMLError(Exception):
    pass


class FakeNVML(types.ModuleType):
    """The slice of pynvml that detection calls, describing the given GPUs."""

    NVMLError = FakeNVMLError
    NVML_CLOCK_MEM = 2

    def __init__(
        self,
        gpus: list[dict[str, object]],
        *,
        init_fails: bool = False,
        failing: frozenset[str] = frozenset(),
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
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return "580.95.05"

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, object]:
        self._call("nvmlDeviceGetHandleByIndex")
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: dict[str, object]) -> str:
        self._call("nvmlDeviceGetName")
        return str(h["name"])

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, object]) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=h["total"], free=h["free"], used=int(h["total"]) - int(h["free"]))  # type: ignore[call-overload]

    def nvmlDeviceGetCudaComputeCapability(self, h: dict[str, object]) -> object:
        self._call("nvmlDeviceGetCudaComputeCapability")
        return h["cc"]

    def nvmlDeviceGetMaxClockInfo(self, h: dict[str, object], clock: int) -> object:
        self._call("nvmlDeviceGetMaxClockInfo")
        assert clock == self.NVML_CLOCK_MEM
        return h["mem_clock_mhz"]

    def nvmlDeviceGetMemoryBusWidth(self, h: dict[str, object]) -> object:
        self._call("nvmlDeviceGetMemoryBusWidth")
        return h["bus_bits"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


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


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64", reason="x86 Linux")
def test_isa_follows_proc_cpuinfo_flags() -> None:
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    words = set(flags.split(":", 1)[1].split())
    isa = detect_cpu().isa
    assert ("AVX2" in isa) == ("avx2" in words)
    assert ("AVX512F" in isa) == ("avx512f" in words)
    assert ("AVX512_VNNI" in isa) == ("avx512_vnni" in words)
    assert ("FMA" in isa) == ("fma" in words)


def test_detect_machine_is_fast_once_bandwidth_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", lambda **_: 21e9)
    detect_machine()  # measures (the stand-in) and caches
    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", lambda **_: pytest.fail("re-measured"))
    start = time.perf_counter()
    p = detect_machine()
    assert time.perf_counter() - start < 1.0
    assert p.ram_bandwidth_bytes_s == 21e9 and p.ram_bandwidth_measured


def test_probing_llama_cpp_prints_nothing() -> None:
    code = "from app.core.machine.hardware import detect_offload; detect_offload()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""


def test_offload_matches_the_installed_build() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    offload, notes = detect_offload()
    assert offload.installed and notes == ()
    assert offload.build_supports_gpu == bool(llama_cpp.llama_supports_gpu_offload())
    assert offload.supported == offload.build_supports_gpu
    assert any(d.kind == "cpu" and d.backend == "CPU" for d in offload.devices)
    assert bool(offload.backends) == any(d.kind in ("gpu", "igpu") for d in offload.devices)


def test_missing_llama_cpp_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import raises ImportError
    offload, notes = detect_offload()
    assert not offload.supported and not offload.installed and offload.devices == ()
    assert any("llama-cpp-python is not installed" in n for n in notes)


# --- NVIDIA through a fake NVML ------------------------------------------------------------------


def test_two_nvidia_gpus_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNVML([H100, RTX_4090])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus, notes = detect_nvidia_gpus()
    assert notes == () and nvml.shut_down
    h100, rtx = gpus
    assert h100 == GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        vendor="nvidia",
        backend="cuda",
        vram_total_bytes=81559 * MIB,
        vram_free_bytes=80000 * MIB,
        driver_version="580.95.05",
        compute_capability="9.0",
        bandwidth_bytes_s=2619e6 * 5120 / 8 * 2,
    )
    assert h100.bandwidth_bytes_s == pytest.approx(3.35e12, rel=0.01)  # NVIDIA's H100 SXM spec
    assert rtx.index == 1 and rtx.name == "NVIDIA GeForce RTX 4090" and rtx.compute_capability == "8.9"
    assert rtx.vram_total_bytes == 24564 * MIB and rtx.vram_free_bytes == 23000 * MIB
    assert rtx.bandwidth_bytes_s == pytest.approx(1008e9, rel=0.01)  # RTX 4090 spec: 1008 GB/s
    assert not h100.unified_memory and not h100.hypothetical


def test_nvml_init_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100], init_fails=True))
    gpus, notes = detect_nvidia_gpus()
    assert gpus == ()
    assert len(notes) == 1 and "NVML not available" in notes[0] and "Driver Not Loaded" in notes[0]


def test_missing_pynvml_and_zero_gpus_are_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert detect_nvidia_gpus() == ((), ("NVML not available: the nvidia-ml-py package is not installed.",))
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([]))
    assert detect_nvidia_gpus() == ((), ("NVML found no NVIDIA GPU.",))


@pytest.mark.parametrize(
    ("failing", "none_fields"),
    [
        ({"nvmlDeviceGetMemoryBusWidth"}, {"bandwidth_bytes_s"}),
        ({"nvmlDeviceGetMaxClockInfo"}, {"bandwidth_bytes_s"}),
        ({"nvmlDeviceGetMemoryInfo"}, {"vram_total_bytes", "vram_free_bytes"}),
        ({"nvmlDeviceGetCudaComputeCapability"}, {"compute_capability"}),
        ({"nvmlSystemGetDriverVersion"}, {"driver_version"}),
        (
            {"nvmlDeviceGetHandleByIndex"},
            {"vram_total_bytes", "vram_free_bytes", "compute_capability", "bandwidth_bytes_s"},
        ),
    ],
)
def test_a_failing_nvml_call_leaves_its_field_none(
    monkeypatch: pytest.MonkeyPatch, failing: set[str], none_fields: set[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100], failing=frozenset(failing)))
    (gpu,), notes = detect_nvidia_gpus()
    assert notes == ()
    for name in (
        "vram_total_bytes",
        "vram_free_bytes",
        "driver_version",
        "compute_capability",
        "bandwidth_bytes_s",
    ):
        assert (getattr(gpu, name) is None) == (name in none_fields), name
    assert gpu.name == ("NVIDIA GPU 0" if "nvmlDeviceGetHandleByIndex" in failing else H100["name"])


def test_detect_machine_with_fake_nvidia_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([RTX_4090]))
    p = detect_machine(measure_bandwidth=False, sysfs_root=tmp_path / "no-drm")
    assert [g.name for g in p.gpus] == ["NVIDIA GeForce RTX 4090"]
    if p.offload.installed and not p.offload.build_supports_gpu:  # this machine's CPU-only wheel
        assert any("CPU-only" in n for n in p.notes)
    assert json.loads(json.dumps(p.to_dict()))["gpus"][0]["compute_capability"] == "8.9"


# --- AMD through a fake sysfs tree ---------------------------------------------------------------


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


# --- Apple through an injected sysctl ------------------------------------------------------------

APPLE_SYSCTL = {
    "machdep.cpu.brand_string": "Apple M2 Pro",
    "hw.optional.neon": "1",
    "hw.optional.arm.FEAT_DotProd": "1",
    "hw.optional.arm.FEAT_I8MM": "0",
    "hw.optional.arm.FEAT_BF16": "1",
}


def test_apple_cpu_from_sysctl() -> None:
    cpu = detect_cpu(system="Darwin", sysctl=APPLE_SYSCTL.get)
    assert cpu.model == "Apple M2 Pro" and cpu.isa == ("NEON", "DOTPROD")
    intel = {
        "machdep.cpu.features": "FPU FMA SSE4.2 AVX1.0 F16C",
        "machdep.cpu.leaf7_features": "BMI1 AVX2 BMI2",
    }
    assert detect_cpu(system="Darwin", sysctl=intel.get).isa == ("AVX", "AVX2", "FMA", "F16C")


def test_arm_linux_cpu_features(tmp_path: Path) -> None:
    _write(
        tmp_path / "cpuinfo",
        "processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp sve i8mm\nCPU part\t: 0xd40\n",
    )
    isa = detect_cpu(system="Linux", cpuinfo_path=tmp_path / "cpuinfo").isa
    assert isa == ("NEON", "DOTPROD", "SVE", "I8MM")


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
    p = apply_overrides(detect_machine(measure_bandwidth=False), ram_bytes=16 * GIB, vram_bytes=8 * GIB)
    d = p.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["ram_total_bytes"] == 16 * GIB and isinstance(d["gpus"][0]["vram_total_bytes"], int)
    assert d["offload"]["supported"] is True and d["overrides"] == list(p.overrides)


# --- bandwidth -----------------------------------------------------------------------------------


def test_ram_bandwidth_is_measured_once_and_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path))
    real, calls = bandwidth.measure_ram_bandwidth_bytes_s, []

    def counting(**kwargs: float) -> float:
        calls.append(1)
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", counting)
    start = time.perf_counter()
    first = bandwidth.ram_bandwidth("Test CPU", 16 * GIB)
    assert time.perf_counter() - start < 2.0  # a 0.3 s budget plus first touch of 256 MiB (slow in VMs)
    assert first.measured and not first.from_cache and first.bytes_s > 1e9
    second = bandwidth.ram_bandwidth("Test CPU", 16 * GIB)
    assert second.from_cache and second.bytes_s == first.bytes_s and len(calls) == 1
    assert (tmp_path / "cache" / "ram_bandwidth.json").exists()
    assert bandwidth.ram_bandwidth("Test CPU", 16 * GIB, force=True).from_cache is False and len(calls) == 2
    other = bandwidth.ram_bandwidth("Other CPU", 16 * GIB, measure=False)  # another key, not measured
    assert not other.measured and other.bytes_s == bandwidth.DEFAULT_RAM_BANDWIDTH_BYTES_S and len(calls) == 2


def test_corrupt_bandwidth_cache_is_measured_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path))
    _write(tmp_path / "cache" / "ram_bandwidth.json", "{not json")
    monkeypatch.setattr(bandwidth, "measure_ram_bandwidth_bytes_s", lambda **_: 12e9)
    assert bandwidth.ram_bandwidth("Test CPU", 8 * GIB).bytes_s == 12e9
    assert (
        json.loads((tmp_path / "cache" / "ram_bandwidth.json").read_text())["Test CPU|8589934592"]["bytes_s"]
        == 12e9
    )


def test_nvidia_bandwidth_formula_against_specs() -> None:
    assert bandwidth.nvidia_bandwidth_bytes_s(2619, 5120) == pytest.approx(3.35e12, rel=0.005)  # H100 SXM
    assert bandwidth.nvidia_bandwidth_bytes_s(10501, 384) == pytest.approx(1008e9, rel=0.005)  # RTX 4090
    assert bandwidth.nvidia_bandwidth_bytes_s(1215, 5120) == pytest.approx(1555e9, rel=0.005)  # A100 40GB

"""What this machine offers a language model: CPU, RAM, GPUs, and what llama.cpp can offload to.

:func:`detect_machine` never raises for a missing GPU, driver or library: each absence becomes a
sentence in ``MachineProfile.notes``. :func:`apply_overrides` answers "what if I had 16 GB of RAM
and an 8 GB GPU?". Bandwidth figures come from :mod:`app.core.machine.bandwidth`.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import psutil

from app.core.errors import HardwareError
from app.core.machine import bandwidth
from app.core.machine.offload import OffloadSupport, detect_offload
from app.core.units import GIB, MIB, format_bytes

SysctlReader = Callable[[str], "str | None"]  # macOS: the value of one sysctl key, None if absent
DRM_ROOT = Path("/sys/class/drm")
AMD_PCI_VENDOR = "0x1002"  # PCI-SIG vendor id of AMD/ATI

# "What if" RAM: the OS, desktop and browser keep some; we assume 25 % of RAM, at most 2 GiB
# (our assumption: a fresh 8 GB laptop shows ~6 GB available, a 32 GB one ~30 GB).
OS_RESERVE_FRACTION = 0.25
OS_RESERVE_MAX_BYTES = 2 * GIB
# A hypothetical GPU with no bandwidth given: RTX 4060 Laptop GPU, the common 8 GB laptop card
# (NVIDIA spec: 128-bit GDDR6 at 16 Gbps = 256 GB/s).
HYPOTHETICAL_GPU_BANDWIDTH_BYTES_S = 256e9
HYPOTHETICAL_GPU_NAME = "hypothetical GPU"

# Instruction sets by llama.cpp's names (llama_print_system_info) from Linux /proc/cpuinfo flags.
_LINUX_FLAGS = {
    "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx_vnni": "AVX_VNNI",
    "avx512f": "AVX512F", "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16",
    "amx_int8": "AMX_INT8", "asimd": "NEON", "asimddp": "DOTPROD", "sve": "SVE", "i8mm": "I8MM",
    "sme": "SME",
}  # fmt: skip
# macOS: hw.optional.* keys (Apple's "Determining instruction set characteristics" article).
_DARWIN_KEYS = {
    "hw.optional.neon": "NEON", "hw.optional.arm.FEAT_DotProd": "DOTPROD",
    "hw.optional.arm.FEAT_I8MM": "I8MM", "hw.optional.arm.FEAT_SME": "SME",
    "hw.optional.avx1_0": "AVX", "hw.optional.avx2_0": "AVX2", "hw.optional.avx512f": "AVX512F",
    "hw.optional.avx512vnni": "AVX512_VNNI",
}  # fmt: skip
# Intel Macs list FMA and F16C only in machdep.cpu.features.
_DARWIN_FEATURE_WORDS = {"FMA": "FMA", "F16C": "F16C", "AVX1.0": "AVX", "AVX2": "AVX2"}
# IsProcessorFeaturePresent ids (learn.microsoft.com, processthreadsapi.h): AVX 39, AVX2 40,
# AVX512F 41, ARM NEON 19, ARM v8.2 dot product 43.
_WINDOWS_FEATURES = {39: "AVX", 40: "AVX2", 41: "AVX512F", 19: "NEON", 43: "DOTPROD"}
_ISA_ORDER = tuple(dict.fromkeys([*_LINUX_FLAGS.values(), *_DARWIN_KEYS.values()]))


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str  # platform.machine(): "x86_64", "AMD64", "arm64", "aarch64"
    physical_cores: int
    logical_cores: int
    isa: tuple[str, ...]  # llama.cpp's names: "AVX2", "AVX512_VNNI", "NEON", "DOTPROD" …


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
    hypothetical: bool = False  # added by apply_overrides


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


# --- CPU -------------------------------------------------------------------------------------


def _cpuinfo_fields(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())  # the first processor speaks for all
    return fields


def _windows_cpu() -> tuple[str, tuple[str, ...]]:
    model, isa = platform.processor(), list[str]()
    if sys.platform == "win32":  # also tells mypy which platform this block is for
        import winreg

        with contextlib.suppress(OSError):
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
            model = str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        with contextlib.suppress(AttributeError, OSError):
            present = ctypes.windll.kernel32.IsProcessorFeaturePresent
            isa = [name for feature, name in _WINDOWS_FEATURES.items() if present(feature)]
    return model, tuple(isa)


def detect_cpu(
    *,
    system: str | None = None,
    sysctl: SysctlReader | None = None,
    cpuinfo_path: Path = Path("/proc/cpuinfo"),
) -> CpuInfo:
    """Model, cores and the instruction sets llama.cpp's CPU kernels care about; best effort."""
    system = system or platform.system()
    found: set[str] = set()
    model = ""
    if system == "Linux":
        info = _cpuinfo_fields(cpuinfo_path)
        # x86 lists "flags", ARM "Features"; ARM often has no "model name" at all
        words = (info.get("flags", "") + " " + info.get("Features", "")).split()
        found = {_LINUX_FLAGS[w] for w in words if w in _LINUX_FLAGS}
        model = info.get("model name") or info.get("Hardware") or info.get("Model") or ""
    elif system == "Darwin" and sysctl is not None:
        found = {name for key, name in _DARWIN_KEYS.items() if (sysctl(key) or "0").strip() == "1"}
        words = f"{sysctl('machdep.cpu.features') or ''} {sysctl('machdep.cpu.leaf7_features') or ''}".split()
        found |= {_DARWIN_FEATURE_WORDS[w] for w in words if w in _DARWIN_FEATURE_WORDS}
        model = sysctl("machdep.cpu.brand_string") or ""
    elif system == "Windows":
        model, isa = _windows_cpu()
        found = set(isa)
    logical = psutil.cpu_count(logical=True) or 1
    return CpuInfo(
        model=model or platform.processor() or platform.machine() or "unknown CPU",
        arch=platform.machine(),
        physical_cores=psutil.cpu_count(logical=False) or logical,
        logical_cores=logical,
        isa=tuple(n for n in _ISA_ORDER if n in found),
    )


def darwin_sysctl_reader() -> SysctlReader:
    """Every key we read, from one ``sysctl`` run; a branch missing on this macOS is just absent."""
    exe = "/usr/sbin/sysctl" if Path("/usr/sbin/sysctl").exists() else "sysctl"  # GUI apps' PATH lacks sbin
    try:
        out = subprocess.run(
            [exe, "hw.optional", "machdep.cpu", "iogpu"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            values[key.strip()] = value.strip()
    return values.get


# --- GPUs ------------------------------------------------------------------------------------


def _nvml(nvml: Any, fn: str, *args: object) -> Any:
    """One NVML call; None when it fails or these bindings are too old to have it."""
    try:
        return getattr(nvml, fn)(*args)
    except (nvml.NVMLError, AttributeError):
        return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):  # nvidia-ml-py before 11.5 returned bytes
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else None


def _nvidia_gpu(nvml: Any, index: int, driver: str | None) -> GpuInfo:
    handle = _nvml(nvml, "nvmlDeviceGetHandleByIndex", index)
    name = _text(_nvml(nvml, "nvmlDeviceGetName", handle)) if handle is not None else None
    mem = _nvml(nvml, "nvmlDeviceGetMemoryInfo", handle) if handle is not None else None
    cc = _nvml(nvml, "nvmlDeviceGetCudaComputeCapability", handle) if handle is not None else None
    clock_mem = getattr(nvml, "NVML_CLOCK_MEM", 2)  # nvml.h: NVML_CLOCK_MEM = 2
    clock = _nvml(nvml, "nvmlDeviceGetMaxClockInfo", handle, clock_mem) if handle is not None else None
    bus = _nvml(nvml, "nvmlDeviceGetMemoryBusWidth", handle) if handle is not None else None
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
    )


def detect_nvidia_gpus() -> tuple[tuple[GpuInfo, ...], tuple[str, ...]]:
    """Every NVIDIA GPU NVML sees, and notes; no driver or no GPU is normal, not an error."""
    try:
        import pynvml
    except ImportError:
        return (), ("NVML not available: the nvidia-ml-py package is not installed.",)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return (), (f"NVML not available: no NVIDIA driver ({e}).",)
    try:
        count = _nvml(pynvml, "nvmlDeviceGetCount") or 0
        driver = _text(_nvml(pynvml, "nvmlSystemGetDriverVersion"))
        gpus = tuple(_nvidia_gpu(pynvml, i, driver) for i in range(count))
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return gpus, () if gpus else ("NVML found no NVIDIA GPU.",)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    return int(text) if text is not None and text.isdigit() else None


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


def _iterdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError:
        return []


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


# --- the profile -----------------------------------------------------------------------------


def detect_machine(
    *,
    measure_bandwidth: bool = True,
    remeasure_bandwidth: bool = False,
    sysfs_root: Path = DRM_ROOT,
    sysctl: SysctlReader | None = None,
) -> MachineProfile:
    """Everything the advisor needs about this machine (< 1 s once bandwidth is cached).

    ``measure_bandwidth=False`` uses the cached RAM bandwidth or a default, never measuring;
    ``remeasure_bandwidth=True`` measures again and replaces the cached figure.
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
    gpus, nvidia_notes = detect_nvidia_gpus()
    notes += nvidia_notes
    if system == "Linux":
        gpus += detect_amd_gpus(sysfs_root)
    elif system == "Windows":
        notes.append("On Windows only NVIDIA GPUs are detected.")
    offload, offload_notes = detect_offload()
    notes += offload_notes
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

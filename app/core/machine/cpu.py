"""The CPU: model name, cores, and the instruction sets llama.cpp's CPU kernels care about.

Read from ``/proc/cpuinfo`` (Linux), ``sysctl`` (macOS) or the registry and
``IsProcessorFeaturePresent`` (Windows); best effort, never raises.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

SysctlReader = Callable[[str], "str | None"]  # macOS: the value of one sysctl key, None if absent

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

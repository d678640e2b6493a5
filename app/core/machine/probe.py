"""The machine probe: ``python -m app.core.machine.probe`` asks NVML and the installed llama.cpp
build what this machine can run on, in a child process, and the answer is cached on disk.

Why a child: loading libllama registers ggml's backends (a CUDA build initialises CUDA), which
costs the window a second and, on a CPU the wheel was not built for, kills it (SIGILL); NVML on
a cold driver blocks too. Why a cache: those answers change only when the build, the driver or
the GPUs change, so the key is exactly that (:func:`probe_key`); a hit spawns no probe. Free
VRAM is the one thing that changes by the minute: on a hit it is read again by the live sampler.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.core import paths, runtime
from app.core.machine.gpus import GpuInfo, detect_amd_gpus
from app.core.machine.nvml import detect_nvidia_gpus
from app.core.machine.offload import BackendDevice, OffloadSupport, detect_offload
from app.core.runtime import module_command

MODULE = "app.core.machine.probe"
# Our CPU wheel answers in 0.6 s on an idle 2-core box, 2-4 s on a busy one (our measurement). A
# CUDA build starts CUDA; where its kernels load eagerly (CUDA before 12.2) and the GPU is newer
# than the build, the driver JIT-compiles them from PTX the first time: minutes, once, then cached.
PROBE_TIMEOUT_S = 120.0
FRESH_VRAM_TIMEOUT_S = 10.0  # a cold NVIDIA driver takes up to a few seconds to answer NVML
_CACHE_FILE = "machine_probe.json"
_SCHEMA = 1  # bump when DeviceReport changes shape: old cache entries then miss
# What changes which devices llama.cpp and NVML see, besides the files and the driver.
_ENV_KEYS = ("PYTHONPATH", "LLAMA_CPP_LIB_PATH", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES",
             "ROCR_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES")  # fmt: skip


@dataclass(frozen=True)
class DeviceReport:
    """What only NVML and the llama.cpp build can tell: NVIDIA GPUs and the build's offload."""

    nvidia_gpus: tuple[GpuInfo, ...]
    offload: OffloadSupport
    notes: tuple[str, ...] = ()  # what could not be detected, in sentences for the user
    from_cache: bool = False  # True: read from the cache (free VRAM read again), no probe ran

    def to_dict(self) -> dict[str, Any]:
        return {"nvidia_gpus": [asdict(g) for g in self.nvidia_gpus], "offload": asdict(self.offload),
                "notes": list(self.notes)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceReport:
        """Raises KeyError, TypeError or ValueError on anything but what :meth:`to_dict` wrote."""
        return cls(tuple(GpuInfo(**g) for g in d["nvidia_gpus"]), _offload(d["offload"]), tuple(d["notes"]))


def _offload(d: dict[str, Any]) -> OffloadSupport:
    devices = tuple(BackendDevice(**x) for x in d["devices"])
    return OffloadSupport(**{**d, "backends": tuple(d["backends"]), "devices": devices})


def detect_devices() -> DeviceReport:
    """Ask NVML and llama.cpp in *this* process: the probe child's work (tests compare with it)."""
    gpus, gpu_notes = detect_nvidia_gpus()
    offload, offload_notes = detect_offload()
    return DeviceReport(gpus, offload, gpu_notes + offload_notes)


# --- the cache -------------------------------------------------------------------------------


def _stat(path: Path) -> list[object]:
    try:
        st = path.stat()
    except OSError:
        return [path.name, None]
    return [path.name, st.st_size, st.st_mtime_ns]


def _llama_cpp_files() -> list[object]:
    """llama-cpp-python's package and native libraries, found without importing (or loading) them."""
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return ["not installed"]
    package = Path(spec.origin).parent
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    files = [package / "__init__.py"]
    for d in (package / "lib", *([Path(override)] if override else [])):
        try:
            files += sorted(p for p in d.iterdir() if "llama" in p.name or "ggml" in p.name)
        except OSError:
            continue
    return [str(package), *(_stat(f) for f in files)]


def _nvidia_driver() -> str | None:
    """The NVIDIA driver's version without NVML: the kernel module's, or nvml.dll's date on Windows."""
    for path in (Path("/sys/module/nvidia/version"), Path("/proc/driver/nvidia/version")):
        try:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()[0].strip()
        except (OSError, IndexError):
            continue
    if sys.platform == "win32":
        return json.dumps(_stat(Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32" / "nvml.dll"))
    return None


def _display_devices() -> list[str]:
    """Linux: vendor:device of each PCI display controller (class 0x03…), so a GPU added or
    removed, an eGPU among them, misses the cache even when the driver stays the same."""
    found = []
    for dev in sorted(Path("/sys/bus/pci/devices").glob("*")):
        try:
            if (dev / "class").read_text().startswith("0x03"):
                found.append(f"{(dev / 'vendor').read_text().strip()}:{(dev / 'device').read_text().strip()}")
        except OSError:
            continue
    return found


def probe_key() -> dict[str, Any]:
    """Everything that would change the probe's answer; cheap (a few stat calls), nothing loaded."""
    return {
        "schema": _SCHEMA,
        "python": sys.executable,
        "llama_cpp": _llama_cpp_files(),
        "nvidia_driver": _nvidia_driver(),
        "display_devices": _display_devices(),
        "env": {k: os.environ[k] for k in _ENV_KEYS if k in os.environ},
    }


def _cache_path() -> Path:
    return paths.cache_dir() / _CACHE_FILE


def cached_report(key: dict[str, Any] | None = None) -> DeviceReport | None:
    """The cached answer for ``key`` (this machine now, by default), or None: no entry, another key."""
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
        if data["key"] != (key if key is not None else probe_key()):
            return None
        return replace(DeviceReport.from_dict(data["report"]), from_cache=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def no_gpu_here() -> bool:
    """True when the cached probe found no NVIDIA GPU and sysfs shows no AMD one: there is no VRAM
    to sample, so a memory monitor need not start the sampler child. False when unsure (no cache)."""
    report = cached_report()
    return report is not None and not report.nvidia_gpus and not detect_amd_gpus()


def _write_cache(key: dict[str, Any], report: DeviceReport, probe_s: float) -> None:
    path = _cache_path()
    tmp = path.with_suffix(".tmp")
    entry = {"key": key, "report": report.to_dict(), "probe_s": round(probe_s, 3),
             "probed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    try:
        tmp.write_text(json.dumps(entry, indent=1), encoding="utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file
    except OSError:
        pass  # a read-only cache only costs a probe next time


# --- the parent's side -----------------------------------------------------------------------


def _ended(returncode: int) -> str:
    if returncode < 0:
        sig = -returncode
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        if sig == getattr(signal, "SIGILL", 4):
            return f"crashed ({name}: the llama.cpp build uses instructions this CPU lacks)"
        return f"crashed ({name})"
    return f"ended with code {returncode}"


def _run_probe(timeout_s: float) -> tuple[DeviceReport, bool]:
    """The probe child's answer, and whether it is complete (only a complete one is cached)."""
    failure = None
    try:
        done = subprocess.run(module_command(MODULE), capture_output=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        out, err = done.stdout, done.stderr
        if done.returncode != 0:
            failure = _ended(done.returncode)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        out, err, failure = e.stdout or b"", e.stderr or b"", f"did not answer within {timeout_s:.0f} s"
    except OSError as e:
        out, err, failure = b"", b"", f"could not start ({e})"
    parts: dict[str, Any] = {}
    for line in out.splitlines():
        with contextlib.suppress(ValueError, TypeError):  # a line that is not one of our answers
            parts.update(json.loads(line))
    why = failure or "gave no answer"
    complete = failure is None
    try:
        gpus, notes = tuple(GpuInfo(**g) for g in parts["nvidia_gpus"]), list(parts["nvidia_notes"])
    except (KeyError, TypeError):
        gpus, notes, complete = (), [f"NVIDIA GPUs could not be detected: the machine probe {why}."], False
    try:
        offload = _offload(parts["offload"])
        notes += parts["offload_notes"]
    except (KeyError, TypeError):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:]
        notes.append(f"Could not ask the llama.cpp build what it can offload to: the machine probe {why}"
                     f"{f' ({tail[0][:200]})' if tail else ''}. Plans use the CPU only.")  # fmt: skip
        offload, complete = (
            OffloadSupport(False, False, importlib.util.find_spec("llama_cpp") is not None),
            False,
        )
    return DeviceReport(gpus, offload, tuple(notes)), complete


def _with_fresh_vram(report: DeviceReport) -> DeviceReport | None:
    """The cached report with each NVIDIA GPU's free VRAM read now; None if it cannot be."""
    if not report.nvidia_gpus:
        return report
    from app.core.machine.sampler_client import shared_sampler

    sample = shared_sampler().read_now(timeout_s=FRESH_VRAM_TIMEOUT_S)
    gpus = []
    for g in report.nvidia_gpus:
        mem = sample.gpu("nvidia", g.index) if sample is not None else None
        if mem is None or mem.free_bytes is None:
            return None  # the GPUs changed under the key, or NVML failed: probe again
        gpus.append(replace(g, vram_free_bytes=mem.free_bytes, vram_total_bytes=mem.total_bytes))
    return replace(report, nvidia_gpus=tuple(gpus))


def probe_devices(*, refresh: bool = False, timeout_s: float = PROBE_TIMEOUT_S) -> DeviceReport:
    """NVIDIA GPUs and the llama.cpp build's offload support, from the cache or a probe child.

    ``refresh`` probes even on a cache hit ("Detect again"). Never raises: a probe that crashes
    or hangs becomes a note, and a CPU-only plan.
    """
    key = probe_key()
    cached = None if refresh else cached_report(key)
    fresh = _with_fresh_vram(cached) if cached is not None else None
    if fresh is not None:
        return fresh
    start = time.perf_counter()
    report, complete = _run_probe(timeout_s)
    if complete:
        _write_cache(key, report, time.perf_counter() - start)
    return report


# --- the child -------------------------------------------------------------------------------


def main() -> int:
    """Write the NVML answer, then the llama.cpp answer, as two JSON lines on stdout: if loading
    libllama crashes the process, the parent still has the first."""
    answer = runtime.private_stdout()  # what llama.cpp prints goes to stderr, not into the answer
    gpus, notes = detect_nvidia_gpus()
    answer.write(
        json.dumps({"nvidia_gpus": [asdict(g) for g in gpus], "nvidia_notes": notes}).encode() + b"\n"
    )
    offload, notes = detect_offload()
    answer.write(json.dumps({"offload": asdict(offload), "offload_notes": notes}).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

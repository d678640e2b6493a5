"""Memory bandwidth: measured for system RAM, derived from specs for GPUs.

Token generation reads every weight once per token, so bandwidth sets the speed the advisor
predicts (:mod:`app.core.advice.speed`). RAM bandwidth is measured once per machine with a multi-threaded
numpy read and cached under :func:`app.core.paths.cache_dir`; GPU bandwidth comes from NVML clocks
(NVIDIA) or Apple's published figures.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from app.core import paths

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# Fallback when nothing was measured: dual-channel DDR4-3200 peaks at 51.2 GB/s
# (2 channels x 8 bytes x 3200 MT/s); copies reach about 60 % of peak, reads more. Conservative for
# laptops.
DEFAULT_RAM_BANDWIDTH_BYTES_S = 30e9
# 256 MiB is twice the largest last-level caches in laptops and desktops (AMD X3D 96-128 MiB, Apple
# Max SLC 48 MiB), so the read streams from DRAM; larger only slows first touch.
_PROBE_ARRAY_BYTES = 256 << 20
_MIN_PROBE_ARRAY_BYTES = 64 << 20
_MIN_TIMED_READS = 2  # best-of needs at least two; the first is often slowed by frequency ramp-up
_MAX_TIMED_READS = 10
_CACHE_FILE = "ram_bandwidth.json"
# Raised when the probe measures something else: a cached figure of another version is measured
# again. 2: a read (the maximum of every byte), not a copy: generation reads weights and writes
# almost nothing. (On this repo's shared VM both figures flip between ~35 and ~60 GB/s from one
# minute to the next, as the hypervisor places the two vCPUs; within one state the read varies
# less, ±5 % against ±15 %; tests/bench/speed_records.json keeps both probes' figures.)
PROBE_VERSION = 2


@dataclass(frozen=True)
class RamBandwidth:
    bytes_s: float
    measured: bool  # False: the fallback default, nothing was measured on this machine
    from_cache: bool = False


def _read(part: npt.NDArray[np.uint8]) -> None:
    part.max()  # SIMD over every byte: as fast as the memory delivers them


def measure_ram_bandwidth_bytes_s(
    *, budget_s: float = 0.3, n_threads: int | None = None, array_bytes: int | None = None
) -> float:
    """Best-of read bandwidth, bytes read / seconds, within about ``budget_s``.

    One thread per physical core, like llama.cpp's default thread count (``cpu_get_num_math``
    in common/common.cpp); numpy releases the GIL while reducing, so the threads run in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import psutil

    deadline = time.perf_counter() + budget_s
    threads = n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    size = array_bytes or min(
        _PROBE_ARRAY_BYTES, max(_MIN_PROBE_ARRAY_BYTES, psutil.virtual_memory().available // 8)
    )
    src = np.ones(size, dtype=np.uint8)  # np.ones writes every page, so no page faults are timed
    bounds = [size * i // threads for i in range(threads + 1)]
    parts = [src[a:b] for a, b in itertools.pairwise(bounds)]
    best = math.inf
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(_read, parts))  # the threads started, the caches warm
        done = 0
        while done < _MIN_TIMED_READS or (done < _MAX_TIMED_READS and time.perf_counter() < deadline):
            start = time.perf_counter()
            list(pool.map(_read, parts))
            best = min(best, time.perf_counter() - start)
            done += 1
    return size / best


def _cache_key(cpu_model: str, ram_total_bytes: int) -> str:
    return f"{cpu_model}|{ram_total_bytes}"


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads((paths.cache_dir() / _CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(data: dict[str, Any]) -> None:
    path = paths.cache_dir() / _CACHE_FILE
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a file
    except OSError:
        pass  # a read-only cache only costs a re-measurement next time


def ram_bandwidth(
    cpu_model: str, ram_total_bytes: int, *, measure: bool = True, force: bool = False
) -> RamBandwidth:
    """The cached measurement for this CPU and RAM size; measured now if missing (or ``force``).

    With ``measure=False`` nothing is measured: the cached value, else the fallback default.
    """
    key = _cache_key(cpu_model, ram_total_bytes)
    cache = _read_cache()
    entry = cache.get(key)
    if (not force and isinstance(entry, dict) and isinstance(entry.get("bytes_s"), (int, float))
            and entry.get("probe") == PROBE_VERSION):  # fmt: skip
        return RamBandwidth(float(entry["bytes_s"]), measured=True, from_cache=True)
    if not measure:
        return RamBandwidth(DEFAULT_RAM_BANDWIDTH_BYTES_S, measured=False)
    value = measure_ram_bandwidth_bytes_s()
    cache[key] = {"bytes_s": value, "probe": PROBE_VERSION,
                  "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    _write_cache(cache)
    return RamBandwidth(value, measured=True)


def nvidia_bandwidth_bytes_s(mem_clock_mhz: int, bus_width_bits: int) -> float:
    """Peak bandwidth from NVML's max memory clock and bus width, two transfers per clock.

    Checked against NVIDIA's specs: H100 SXM 2619 MHz x 5120 bit → 3.35 TB/s (spec 3.35 TB/s);
    RTX 4090 10501 MHz x 384 bit → 1.008 TB/s (spec 1008 GB/s); A100 40GB 1215 MHz x 5120 bit →
    1.555 TB/s (spec 1555 GB/s). NVML already reports GDDR6X/GDDR6 clocks such that x2 gives the
    per-pin data rate (10501 MHz → 21 Gbps).
    """
    return mem_clock_mhz * 1e6 * bus_width_bits / 8 * 2


# PCI Express payload bandwidth per lane and direction after line encoding, bytes/s, by generation
# (PCI-SIG: 2.5/5 GT/s with 8b/10b, then 8/16/32/64 GT/s with 128b/130b; Gen 6's FLIT mode ~242/256).
PCIE_LANE_BYTES_S = {1: 0.25e9, 2: 0.5e9, 3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}


def pcie_bytes_s(generation: int, width: int) -> float | None:
    """One direction of a PCIe link, from NVML's link generation and width; None if unknown."""
    lane = PCIE_LANE_BYTES_S.get(generation)
    return lane * width if lane and width > 0 else None


# Apple's published unified-memory bandwidth in GB/s (apple.com newsroom and tech-specs pages per
# chip; M1's 68.25 GB/s is LPDDR4X-4266 on 128 bits, which Apple never printed). A tuple is
# (14-core CPU, 16-core CPU) for the Max chips that come in two memory widths.
_APPLE_BANDWIDTH_GB_S: dict[str, float | tuple[float, float]] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": (300, 400), "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": (410, 546),
    "M5": 153,
}  # fmt: skip
_APPLE_CHIP = re.compile(r"\bApple (M\d+(?: (?:Pro|Max|Ultra))?)\b")


def apple_gpu_bandwidth_bytes_s(chip_name: str, cpu_cores: int | None = None) -> float | None:
    """Apple's figure for a chip such as ``"Apple M3 Max"``; None for chips we do not know."""
    m = _APPLE_CHIP.search(chip_name)
    value = _APPLE_BANDWIDTH_GB_S.get(m.group(1)) if m else None
    if value is None:
        return None
    if isinstance(value, tuple):
        value = value[1] if cpu_cores is not None and cpu_cores >= 16 else value[0]  # unknown: the lower
    return value * 1e9

"""After a load, settle the model file's pages: give back what llama.cpp will not read again, bring
back what it will, and say that later reads come at random.

llama.cpp maps the whole model file and reads all of it at load, including tensors it then copies
elsewhere (repacked for the CPU, uploaded to a GPU): their file pages stay cached and mapped,
counted in the process's memory until the kernel is short of it. The plan knows which byte ranges
those are (``app.core.advice.estimate.read_once_ranges``) and leaves them out of the RAM that must
fit. Under memory pressure the kernel does not know it: it evicts by age, often pages that every
token reads, and a load that fits only without the read-once pages then re-reads weights from disk
for every prompt. So once loaded, on Linux:

1. the read-once ranges are unmapped here (``MADV_DONTNEED``) and dropped from the page cache
   (``POSIX_FADV_DONTNEED``; pages another process maps are kept by the kernel);
2. the rest of the mapping is asked back (``MADV_WILLNEED``: read ahead in large requests) and
   waited for (``MADV_POPULATE_READ``), in case the load's own peak evicted some of it — pages
   already there cost nothing — so the first prompt does not fault them in one by one;
3. the mapping is advised ``MADV_RANDOM``: llama.cpp advised sequential reads for the load, and a
   page evicted later would come back with megabytes of read-ahead, mostly pages nobody needs, so
   the working set would never settle.

Measured in a memory cgroup at the predicted ``ram_bytes`` + 3 % (tests/bench/ram_cgroup.py):
Llama-3.2-1B shapes, Q4_K_M, re-read 871 MiB from disk per generated token and ran at 0.04× speed
without any advice; with ``MADV_RANDOM`` alone the answer kept ~0.9× but the prompt ran at 0.5×,
re-reading evicted weights a page at a time. Without memory pressure nothing is evicted, and the
only change is a smaller resident set. Every step is advice: a failure leaves the load as it is,
and a range wrongly given back only costs reading it again.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MADV_RANDOM = 1  # <sys/mman.h> on Linux
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_POPULATE_READ = 22
BLOCK = 2 << 20  # the largest page-cache folio with 4 KiB pages (a PMD on x86-64 and arm64)


@dataclass(frozen=True)
class PageAdvice:
    mapped_bytes: int = 0  # of the file, mapped in this process
    released_bytes: int = 0  # read-once bytes unmapped and dropped from the cache
    prefetched_bytes: int = 0  # mapped bytes asked back (MADV_WILLNEED)


def _mappings(path: str) -> list[tuple[int, int, int]]:
    """``(address, length, file offset)`` of every mapping of ``path`` in this process."""
    target = os.path.realpath(path)
    out = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].rstrip("\n") == target:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                out.append((lo, hi - lo, int(fields[2], 16)))
    return out


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` spans sorted, overlapping or touching ones joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _clean(ranges: Iterable[tuple[int, int]], file_size: int, page: int) -> list[tuple[int, int]]:
    """Whole pages inside the file, as merged spans (the ranges come from another process)."""
    spans = ((-(-max(0, off) // page) * page, min(off + n, file_size) // page * page) for off, n in ranges)
    return _merged((a, b) for a, b in spans if b > a)


def _blocks(spans: list[tuple[int, int]], file_size: int) -> list[tuple[int, int]]:
    """``spans`` widened to whole ``BLOCK``s (the largest page-cache folio), merged."""
    return _merged((a // BLOCK * BLOCK, min(-(-b // BLOCK) * BLOCK, file_size)) for a, b in spans)


def settle_pages(path: str, read_once: Iterable[tuple[int, int]] = ()) -> PageAdvice:
    """Steps 1-3 of the module's docstring for the mappings of ``path`` in this process (nothing
    off Linux, or where the file is not mapped: a load without mmap)."""
    if not sys.platform.startswith("linux"):
        return PageAdvice()
    try:
        maps = _mappings(path)
        page = os.sysconf("SC_PAGE_SIZE")
        file_size = Path(path).stat().st_size
    except (OSError, ValueError):
        return PageAdvice()  # no /proc: the advice is an optimisation, the load stands
    if not maps:
        return PageAdvice()
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int

    def advise(lo: int, hi: int, addr: int, base: int, length: int, how: int) -> int:
        """``how`` on the file bytes [lo, hi) where this mapping holds them; the bytes advised."""
        lo, hi = max(lo, base), min(hi, base + length)
        return hi - lo if hi > lo and madvise(addr + lo - base, hi - lo, how) == 0 else 0

    drop = _clean(read_once, file_size, page)
    # The kernel caches a file in folios of up to BLOCK bytes, and drops a folio whole or not at
    # all: one that also holds bytes still read would keep its read-once part resident. So the
    # blocks around every read-once range are dropped whole, and the bytes still read in them are
    # read back at once — as single pages, since the mapping is advised random reads first.
    blocks = _blocks(drop, file_size)
    for addr, length, base in maps:
        madvise(addr, length, MADV_RANDOM)
        for a, b in blocks:
            advise(a, b, addr, base, length, MADV_DONTNEED)
    released = prefetched = 0
    if blocks and hasattr(os, "posix_fadvise"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                for a, b in blocks:  # unmapped above, or already unmapped by llama.cpp itself
                    os.posix_fadvise(fd, a, b - a, os.POSIX_FADV_DONTNEED)
                released = sum(b - a for a, b in drop)
            except OSError:
                pass
            finally:
                os.close(fd)
    keep = []  # everything mapped but the read-once ranges is asked back
    for addr, length, base in maps:
        keep_from = base
        for a, b in (*drop, (base + length, base + length)):
            if a > keep_from:
                keep.append((keep_from, a, addr, base, length))
            keep_from = max(keep_from, b)
    for k in keep:  # read-ahead requests for all of it first, then wait for them
        prefetched += advise(*k, MADV_WILLNEED)
    for k in keep:  # (Linux 5.14+; elsewhere the first tokens wait for the pages instead)
        advise(*k, MADV_POPULATE_READ)
    return PageAdvice(sum(m[1] for m in maps), released, prefetched)

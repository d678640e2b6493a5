"""After a load, tell Linux that the model file's pages will be read back at random.

llama.cpp maps the model file and advises ``POSIX_FADV_SEQUENTIAL`` for the load, so the kernel
reads ahead generously (the disk's read-ahead, doubled). Once loaded, the pages of a CPU-resident
model are touched tensor by tensor every token, and under memory pressure the kernel evicts some:
reading one back with that read-ahead also reads its neighbours — often the repacked or uploaded
tensors nobody needs again — so the working set never settles. Measured in a memory cgroup at the
predicted ``ram_bytes`` + 3 % (tests/bench/ram_cgroup.py): Llama-3.2-1B shapes, Q4_K_M, re-read
871 MiB from disk per generated token and ran at 0.04× speed; with ``MADV_RANDOM`` on the mapping
after the load, pages were re-read only during the first prompt (1.1 GB in all instead of 46 GB).
Without memory pressure nothing is evicted and the advice changes nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

MADV_RANDOM = 1  # <sys/mman.h> on Linux


def advise_random_reads(path: str) -> int:
    """``madvise(MADV_RANDOM)`` on every mapping of ``path`` in this process; the bytes advised
    (0 off Linux, or where the file is not mapped: a load without mmap)."""
    if not sys.platform.startswith("linux"):
        return 0
    target = os.path.realpath(path)
    libc = ctypes.CDLL(None, use_errno=True)
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    advised = 0
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == target:
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    if madvise(lo, hi - lo, MADV_RANDOM) == 0:
                        advised += hi - lo
    except OSError:
        return advised  # no /proc: the advice is an optimisation, the load stands
    return advised

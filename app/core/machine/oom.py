"""Did the kernel's out-of-memory killer run? Its own counters say, where this system shows them.

A child killed by SIGKILL may have been chosen by the OOM killer, or killed by a person or a
service manager. Guessing "out of memory" sends the user to pick a smaller model for nothing, so
the app snapshots these counters when a child starts and compares them when it dies:

- ``/proc/vmstat`` ``oom_kill``: every OOM kill on this kernel (Linux 4.13+);
- cgroup v2 ``memory.events`` ``oom_kill`` of this process's cgroup, which also counts kills by a
  container's memory limit (Linux docs, Documentation/admin-guide/cgroup-v2.rst);
- cgroup v1 ``memory.oom_control`` ``oom_kill`` (Linux 4.13+), at the hierarchy's root as a
  container sees it.
"""

from __future__ import annotations

from pathlib import Path

OomCounters = tuple[int | None, ...]  # one entry per source above; None: not readable here


def _field(path: Path, name: str) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def _cgroup_v2_dir(root: Path) -> Path | None:
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return root / "sys/fs/cgroup" / line[3:].lstrip("/")
    return None


def oom_counters(root: Path = Path("/")) -> OomCounters:
    """The OOM-kill counters this system shows (``root`` is for tests)."""
    v2 = _cgroup_v2_dir(root)
    return (
        _field(root / "proc/vmstat", "oom_kill"),
        _field(v2 / "memory.events", "oom_kill") if v2 is not None else None,
        _field(root / "sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
    )


def oom_kill_between(before: OomCounters, after: OomCounters) -> bool | None:
    """True when a counter grew between the two snapshots, False when every readable one stayed,
    None when none could be read (not Linux, or hidden from this process)."""
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if b is not None and a is not None]
    if not pairs:
        return None
    return any(a > b for b, a in pairs)

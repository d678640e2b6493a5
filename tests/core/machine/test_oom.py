"""The kernel's out-of-memory counters, read from the files Linux writes (a copy of their layout)."""

from __future__ import annotations

from pathlib import Path

from app.core.machine.oom import oom_counters, oom_kill_between


def _system(root: Path, *, vmstat: int, v2: int | None = None, v1: int | None = None) -> Path:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/vmstat").write_text(f"nr_free_pages 1\noom_kill {vmstat}\npgfault 9\n")
    (root / "proc/self/cgroup").write_text(
        "0::/user.slice/app.scope\n" if v2 is not None else "4:memory:/x\n"
    )
    if v2 is not None:
        group = root / "sys/fs/cgroup/user.slice/app.scope"
        group.mkdir(parents=True, exist_ok=True)
        (group / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {v2}\n")
    if v1 is not None:
        (root / "sys/fs/cgroup/memory").mkdir(parents=True, exist_ok=True)
        (root / "sys/fs/cgroup/memory/memory.oom_control").write_text(
            f"oom_kill_disable 0\nunder_oom 0\noom_kill {v1}\n"
        )
    return root


def test_counters_are_read_from_each_source(tmp_path: Path) -> None:
    assert oom_counters(_system(tmp_path / "a", vmstat=5, v2=2)) == (5, 2, None)
    assert oom_counters(_system(tmp_path / "b", vmstat=0, v1=7)) == (0, None, 7)
    assert oom_counters(tmp_path / "nothing") == (None, None, None)


def test_a_kill_is_seen_in_any_counter_and_unknown_is_not_no(tmp_path: Path) -> None:
    root = _system(tmp_path, vmstat=5, v2=2)
    before = oom_counters(root)
    assert oom_kill_between(before, oom_counters(root)) is False
    _system(root, vmstat=5, v2=3)  # a container's own limit: only its cgroup counts it
    assert oom_kill_between(before, oom_counters(root)) is True
    assert oom_kill_between((None, None, None), (None, None, None)) is None

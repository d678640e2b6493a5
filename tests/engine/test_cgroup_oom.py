"""A real model killed by a memory cgroup's OOM killer: the error the user sees names the cause
("the system ran out of memory …") and points at a smaller plan, both while the model loads and
while it answers. SmolLM2 through ``EngineClient``, its process moved into the cgroup right after
the spawn; skipped where no memory cgroup is writable (the helper says why)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.errors import ProcessDied
from tests.engine.test_child import _memory_cgroup
from tests.models import smollm2_path

MIB = 1 << 20
SMALL_PLAN_HINT = "Try a smaller quantization, a shorter context or fewer GPU layers."


def _stat(group: Path, *names: str) -> int:
    """A figure of the group's memory.stat (v1 and v2 name some differently: the first found)."""
    fields = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    return int(next(fields[n] for n in names if n in fields))


def _assert_told_as_out_of_memory(died: ProcessDied, stage: str) -> None:
    assert died.death.returncode == -signal.SIGKILL
    if died.death.oom_killed is None:
        pytest.skip("this system shows no out-of-memory counters")
    assert (
        str(died) == f"The model process ended {stage}: the system ran out of memory and killed it (SIGKILL)."
    )
    assert died.hint == SMALL_PLAN_HINT


def test_a_load_that_outgrows_the_cgroup_is_told_as_out_of_memory() -> None:
    # The KV cache alone (90 MiB at 4,096 tokens) is more than the whole group may hold.
    with EngineClient() as client:
        for group in _memory_cgroup(64 * MIB):
            client.start()
            assert client.pid is not None
            (group / "cgroup.procs").write_text(str(client.pid))
            with pytest.raises(ProcessDied) as info:
                client.load(P.Load(model_path=str(smollm2_path()), n_ctx=4096, n_threads=2))
            client.close()  # reaped: the group can go
    _assert_told_as_out_of_memory(info.value, "while loading the model")


def test_an_answer_that_outgrows_the_cgroup_is_told_as_out_of_memory() -> None:
    with EngineClient() as client:
        for group in _memory_cgroup(1 << 40):
            client.start()
            assert client.pid is not None
            (group / "cgroup.procs").write_text(str(client.pid))
            client.load(P.Load(model_path=str(smollm2_path()), n_ctx=1024, n_threads=2))
            # Room for what is allocated now, not for the compute buffer a 512-token prompt fills
            # (~15 MiB here): the weights' file pages are dropped to make room, then the process dies.
            anon = _stat(group, "rss", "anon")
            limit = "memory.limit_in_bytes" if (group / "memory.limit_in_bytes").exists() else "memory.max"
            (group / limit).write_text(str(anon + 4 * MIB))
            with pytest.raises(ProcessDied) as info:
                for _ in client.generate("word " * 500, P.Sampling(temperature=0, max_tokens=4)):
                    pass
            client.close()
    _assert_told_as_out_of_memory(info.value, "while writing an answer")

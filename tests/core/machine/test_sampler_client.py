"""One sampler child shared by every subscriber: started by the first, stopped with the last,
watching the union of their processes at the fastest interval asked for."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.machine.sampler import MachineSample
from app.core.machine.sampler_client import SamplerClient, Subscription, shared_sampler
from app.core.units import GIB
from tests.core.machine.fake_nvml import H100, child_pythonpath


def _child_of(client: SamplerClient) -> subprocess.Popen[bytes]:
    proc = client._proc
    assert proc is not None
    return proc


def _first_sample(
    sub: Subscription, wanted: Callable[[MachineSample], bool], timeout_s: float = 10
) -> MachineSample | None:
    deadline, last = time.monotonic() + timeout_s, 0.0
    while (s := sub.wait(newer_than=last, timeout_s=max(0.0, deadline - time.monotonic()))) is not None:
        if wanted(s):
            return s
        last = s.t
    return None


def _samples_in(sub: Subscription, seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    last = sub.latest.t if sub.latest is not None else 0.0
    while (s := sub.wait(newer_than=last, timeout_s=max(0.0, end - time.monotonic()))) is not None:
        n, last = n + 1, s.t
    return n


def test_first_subscriber_starts_it_last_one_stops_it() -> None:
    client = SamplerClient()
    assert not client.running
    panel = client.subscribe(interval_s=1.0)
    monitor = client.subscribe(interval_s=0.1)
    child = _child_of(client)
    first = panel.wait(newer_than=0, timeout_s=20)
    assert first is not None and monitor.latest is first  # both read the one child's samples
    assert _samples_in(panel, 1.5) >= 5  # the fastest wish wins: 0.1 s, not the panel's 1 s
    monitor.close()
    assert client.running and child.poll() is None
    assert _samples_in(panel, 1.5) <= 3  # the monitor left: back to the panel's interval
    panel.close()
    assert not client.running and client.latest is None
    assert child.wait(timeout=5) == 0  # it ended at the end of its stdin, not killed


def test_a_watched_pid_gets_its_vram_and_an_unattributable_one_none(tmp_path: Path) -> None:
    me, other = os.getpid(), os.getppid()  # NVML lists the first, not the second
    env = dict(os.environ, PYTHONPATH=child_pythonpath(tmp_path, [{**H100, "procs": [(me, 3 * GIB)]}]))
    client = SamplerClient(env=env)
    with client.subscribe(pids=[me]) as sub:
        s = sub.wait(newer_than=0, timeout_s=20)
        assert s is not None and s.process_vram_bytes == {me: 3 * GIB}
        sub.watch(other)
        s = _first_sample(sub, lambda s: other in s.process_vram_bytes)  # a sample in flight may predate it
        assert s is not None and s.process_vram_bytes == {me: 3 * GIB, other: None}
    assert not client.running


def test_read_now_takes_the_running_childs_sample_or_starts_one() -> None:
    client = SamplerClient()
    alone = client.read_now(timeout_s=20)
    assert alone is not None and not client.running  # started for the one sample, and stopped
    with client.subscribe() as sub:
        live = sub.wait(newer_than=0, timeout_s=20)
        assert live is not None
        assert client.read_now(max_age_s=60) is live  # a fresh enough sample: no new one waited for
        assert client.running


def test_a_child_that_cannot_start_leaves_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    client = SamplerClient(env={"PATH": "", "PYTHONPATH": "/nonexistent"})
    monkeypatch.setattr("app.core.machine.sampler_client.module_command", lambda *a: ["/nonexistent/python"])
    start = time.monotonic()
    assert client.read_now(timeout_s=10) is None
    assert time.monotonic() - start < 5 and client.error and "could not start" in client.error


def test_the_shared_sampler_is_one_object() -> None:
    assert shared_sampler() is shared_sampler()

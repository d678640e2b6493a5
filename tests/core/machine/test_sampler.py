"""The sampler child's side: one sample of this machine (fake NVML only at the pynvml boundary),
the JSON line it travels as, and the protocol of ``python -m app.core.machine.sampler``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from app.core.machine import sampler
from app.core.machine.gpus import GpuMemory
from app.core.machine.nvml import NvmlReader
from app.core.machine.sampler import MachineSample, take_sample
from app.core.units import GIB, MIB
from tests.core.machine.fake_nvml import H100, FakeNVML, child_pythonpath


def test_a_sample_of_this_machine_without_nvml() -> None:
    first = take_sample(None, [os.getpid()], first=True)
    vm = psutil.virtual_memory()
    assert first.ram_total_bytes == vm.total and 0 < first.ram_used_bytes < vm.total
    assert first.cpu_percent is None  # psutil has no reference point yet: unknown, not 0 %
    assert first.process_vram_bytes == {os.getpid(): None}  # no NVML: nothing can be attributed
    later = take_sample(None, [], first=False)
    assert later.cpu_percent is not None and 0.0 <= later.cpu_percent <= 100.0


def test_a_sample_with_nvml_attributes_only_what_it_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    me = os.getpid()
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([{**H100, "procs": [(me, 3 * GIB)]}]))
    nvml = NvmlReader.open()
    s = take_sample(nvml, [me, 999_999], first=False)
    assert s.gpu("nvidia", 0) == GpuMemory("nvidia", 0, 1559 * MIB, 81559 * MIB, 80000 * MIB)
    assert s.gpu("nvidia", 1) is None
    assert s.process_vram_bytes == {me: 3 * GIB, 999_999: None}


def test_the_json_line_round_trips() -> None:
    s = MachineSample(0.0, 5 * GIB, 16 * GIB, 12.5, (GpuMemory("nvidia", 0, 1, 2, 1), GpuMemory("amd", 0, None, 8, None)),
                      {42: 3 * GIB, 43: None})  # fmt: skip
    assert MachineSample.from_json(s.to_json(), t=7.0) == MachineSample(7.0, *[getattr(s, f) for f in (
        "ram_used_bytes", "ram_total_bytes", "cpu_percent", "gpus", "process_vram_bytes")])  # fmt: skip
    with pytest.raises((ValueError, KeyError)):
        MachineSample.from_json('{"ram_used_bytes": 1}', t=0.0)


def test_the_child_follows_its_stdin_and_ends_with_it(tmp_path: Path) -> None:
    me = os.getpid()
    env = dict(os.environ, PYTHONPATH=child_pythonpath(tmp_path, [{**H100, "procs": [(me, 2 * GIB)]}]))
    child = subprocess.Popen([sys.executable, "-m", sampler.MODULE, json.dumps({"interval_s": 60})],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        first = MachineSample.from_json(child.stdout.readline(), t=0.0)
        assert first.process_vram_bytes == {} and first.gpu("nvidia", 0) is not None
        start = time.monotonic()
        child.stdin.write(json.dumps({"interval_s": 60, "pids": [me]}) + "\n")
        child.stdin.flush()
        # A new wish wakes it: it does not wait out the 60 s. (A sample already on its way when
        # the wish arrived may come first, without the pid.)
        woken = MachineSample.from_json(child.stdout.readline(), t=0.0)
        while me not in woken.process_vram_bytes and time.monotonic() - start < 5:
            woken = MachineSample.from_json(child.stdout.readline(), t=0.0)
        assert time.monotonic() - start < 5
        assert woken.process_vram_bytes == {me: 2 * GIB}
        child.stdin.close()  # the app is gone
        assert child.wait(timeout=5) == 0
    finally:
        child.kill()
        child.wait()
        child.stdout.close()

"""The model process's memory as the app measures it: RSS here, VRAM from the shared sampler child
— with a fake NVML only at the pynvml boundary of that child. Unknown is stored as None, not 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core import paths
from app.core.machine import probe
from app.core.machine.gpus import detect_amd_gpus
from app.core.machine.sampler_client import SamplerClient, shared_sampler
from app.core.units import GIB
from app.engine.monitor import MemoryMonitor
from tests.core.machine.fake_nvml import H100, child_pythonpath


@pytest.fixture
def model_process() -> Iterator[subprocess.Popen[bytes]]:
    """A real process standing in for the model process (its RSS is real, its VRAM the fake's)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _sampler(tmp_path: Path, procs: list[tuple[int, int | None]]) -> SamplerClient:
    path = child_pythonpath(tmp_path, [{**H100, "procs": procs}])
    return SamplerClient(env=dict(os.environ, PYTHONPATH=path))


def _until_gpu_sampled(monitor: MemoryMonitor) -> None:
    deadline = time.monotonic() + 20
    while monitor.latest.device_vram_used_bytes is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert monitor.latest.device_vram_used_bytes is not None, "the sampler child never answered"


@pytest.mark.parametrize("listed", ["no process", "another pid (a container)", "not available (MIG, WDDM)"])
def test_vram_nvml_cannot_attribute_is_stored_as_none(
    tmp_path: Path, model_process: subprocess.Popen[bytes], listed: str
) -> None:
    pid = model_process.pid
    procs = {
        "no process": [],
        "another pid (a container)": [(1, 5 * GIB)],
        "not available (MIG, WDDM)": [(pid, None)],
    }
    with MemoryMonitor(pid, interval_s=0.05, sampler=_sampler(tmp_path, procs[listed])) as mon:
        _until_gpu_sampled(mon)
        time.sleep(0.2)  # several samples, each with the pid watched
    assert mon.latest.child_vram_bytes is None and mon.peak.child_vram_bytes is None  # not 0
    assert mon.peak.device_vram_used_bytes == H100["total"] - H100["free"]  # the GPU's own use is known
    assert mon.peak.child_rss_bytes is not None and mon.peak.child_rss_bytes > 1 << 20  # a real process


def test_vram_nvml_attributes_is_stored(tmp_path: Path, model_process: subprocess.Popen[bytes]) -> None:
    sampler = _sampler(tmp_path, [(model_process.pid, 3 * GIB), (1, 5 * GIB)])
    with MemoryMonitor(model_process.pid, interval_s=0.05, sampler=sampler) as mon:
        _until_gpu_sampled(mon)
        deadline = time.monotonic() + 5
        while mon.latest.child_vram_bytes is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert mon.latest.child_vram_bytes == 3 * GIB and mon.peak.child_vram_bytes == 3 * GIB
    assert not sampler.running  # the monitor was its only subscriber


def test_a_process_that_is_gone_has_unknown_rss_and_keeps_its_peak(
    model_process: subprocess.Popen[bytes],
) -> None:
    with MemoryMonitor(model_process.pid, interval_s=0.05) as mon:
        rss = mon.latest.child_rss_bytes
        assert rss is not None and rss > 0
        model_process.kill()
        model_process.wait()
        time.sleep(0.2)
        assert mon.latest.child_rss_bytes is None  # could not be read: not 0
    assert mon.peak.child_rss_bytes is not None and mon.peak.child_rss_bytes >= rss
    assert mon.latest.system_used_bytes is not None and mon.latest.system_used_bytes > 0


def test_without_a_gpu_no_sampler_child_is_started(model_process: subprocess.Popen[bytes]) -> None:
    if probe.probe_devices().nvidia_gpus or detect_amd_gpus():  # the probe's answer is cached now
        pytest.skip("this machine has a GPU: its VRAM is sampled")
    with MemoryMonitor(model_process.pid, interval_s=0.05) as mon:
        assert not shared_sampler().running  # nothing to attribute, so no child for it
    assert mon.latest.child_vram_bytes is None and mon.latest.device_vram_used_bytes is None
    assert mon.latest.child_rss_bytes is not None
    # without the probe's answer the monitor cannot know that: it asks the sampler
    (paths.cache_dir() / "machine_probe.json").unlink()
    with MemoryMonitor(model_process.pid, interval_s=0.05):
        assert shared_sampler().running
    assert not shared_sampler().running

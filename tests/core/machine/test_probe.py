"""The machine probe child: it answers as detection in this process does, its answer is cached
(a hit spawns no process), what would change the answer misses the cache, and a probe that
crashes or hangs becomes a note — never a crash of the app, never a cached answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.core.machine import probe
from app.core.machine.hardware import detect_machine
from app.core.units import MIB
from tests.core.machine.fake_nvml import H100, child_pythonpath


@pytest.fixture(autouse=True)
def _no_cached_probe() -> None:
    """These tests start from an empty cache (tests/conftest.py seeds each home with the run's probe)."""
    (probe.paths.cache_dir() / probe._CACHE_FILE).unlink(missing_ok=True)


def _count_probes(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The probe children started from now on (subprocess.run is how the probe starts one)."""
    started: list[list[str]] = []
    real: Callable[..., Any] = subprocess.run

    def run(args: list[str], **kwargs: Any) -> Any:
        started.append(args)
        return real(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    return started


def _fake_llama_cpp(tmp_path: Path, body: str) -> str:
    """A PYTHONPATH whose ``llama_cpp`` runs ``body`` when the probe imports it."""
    package = tmp_path / "fake-llama" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    return os.pathsep.join([str(package.parent), str(probe.Path(__file__).resolve().parents[3])])


def test_the_probe_child_answers_as_detection_in_this_process() -> None:
    report = probe.probe_devices()
    assert not report.from_cache
    assert report == probe.detect_devices()
    assert report.offload.installed  # the test environment has llama-cpp-python
    child = detect_machine(measure_bandwidth=False)
    here = detect_machine(measure_bandwidth=False, devices=probe.detect_devices())
    assert replace(child, ram_available_bytes=0) == replace(here, ram_available_bytes=0)


def test_a_second_call_hits_the_cache_and_spawns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    first = probe.probe_devices()

    def no_process(*args: object, **kwargs: object) -> None:
        pytest.fail("a process was started on a cache hit")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    second = probe.probe_devices()
    assert second.from_cache and replace(second, from_cache=False) == first
    assert detect_machine(measure_bandwidth=False).offload == first.offload


def test_what_would_change_the_answer_misses_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _count_probes(monkeypatch)
    probe.probe_devices()
    probe.probe_devices()
    assert len(started) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # llama.cpp and NVML would see other GPUs
    assert probe.cached_report() is None
    probe.probe_devices()
    assert len(started) == 2
    probe.probe_devices(refresh=True)  # "Detect again"
    assert len(started) == 3 and probe.cached_report() is not None


def test_the_probe_child_prints_nothing_but_its_answer() -> None:
    out = subprocess.run([sys.executable, "-m", probe.MODULE], capture_output=True, text=True, check=True)
    assert out.stderr == ""  # llama.cpp's and ggml's start-up logs are kept quiet
    assert [sorted(json.loads(line)) for line in out.stdout.splitlines()] == [
        ["nvidia_gpus", "nvidia_notes"],
        ["offload", "offload_notes"],
    ]


def test_a_probe_that_crashes_is_a_note_and_is_not_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a wheel built for instructions this CPU lacks dies with SIGILL when libllama loads
    crash = "import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n"
    monkeypatch.setenv("PYTHONPATH", _fake_llama_cpp(tmp_path, crash))
    report = probe.probe_devices()
    assert not report.offload.supported and not report.offload.build_supports_gpu
    (note,) = [n for n in report.notes if "llama.cpp build" in n]
    assert "crashed (SIGILL" in note and "CPU only" in note
    assert any("NVML" in n for n in report.notes)  # the first answer, NVML's, arrived before the crash
    assert probe.cached_report() is None  # the next start asks again


def test_a_probe_that_hangs_is_stopped_at_its_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", _fake_llama_cpp(tmp_path, "import time\ntime.sleep(60)\n"))
    report = probe.probe_devices(timeout_s=3)
    assert any("did not answer within 3 s" in n for n in report.notes)
    assert not report.offload.supported and probe.cached_report() is None


def test_a_cache_hit_reads_free_vram_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started = _count_probes(monkeypatch)
    monkeypatch.setenv("PYTHONPATH", child_pythonpath(tmp_path, [H100]))
    (gpu,) = probe.probe_devices().nvidia_gpus
    assert gpu.name == H100["name"] and gpu.vram_free_bytes == 80000 * MIB
    child_pythonpath(tmp_path, [{**H100, "free": 60000 * MIB}])  # another program took 20 GB
    hit = probe.probe_devices()
    assert hit.from_cache and len(started) == 1  # no probe; the live sampler read the GPU
    assert hit.nvidia_gpus == (replace(gpu, vram_free_bytes=60000 * MIB),)
    profile = detect_machine(measure_bandwidth=False)
    assert profile.gpus[0].vram_free_bytes == 60000 * MIB and len(started) == 1

"""NVIDIA GPUs through a fake NVML at the pynvml boundary: static facts for the profile, live
memory, and per-process VRAM — None, never 0, when NVML cannot attribute it."""

from __future__ import annotations

import sys

import pytest

from app.core.machine.gpus import GpuInfo, GpuMemory
from app.core.machine.nvml import NvmlReader, detect_nvidia_gpus
from app.core.units import GIB, MIB
from tests.core.machine.fake_nvml import H100, NOT_AVAILABLE, RTX_4090, FakeNVML

ME, OTHER = 4242, 777


def test_two_nvidia_gpus_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNVML([H100, RTX_4090])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    gpus, notes = detect_nvidia_gpus()
    assert notes == () and nvml.shut_down
    h100, rtx = gpus
    assert h100 == GpuInfo(
        index=0,
        name="NVIDIA H100 80GB HBM3",
        vendor="nvidia",
        backend="cuda",
        vram_total_bytes=81559 * MIB,
        vram_free_bytes=80000 * MIB,
        driver_version="580.95.05",
        compute_capability="9.0",
        bandwidth_bytes_s=2619e6 * 5120 / 8 * 2,
    )
    assert h100.bandwidth_bytes_s == pytest.approx(3.35e12, rel=0.01)  # NVIDIA's H100 SXM spec
    assert rtx.index == 1 and rtx.name == "NVIDIA GeForce RTX 4090" and rtx.compute_capability == "8.9"
    assert rtx.vram_total_bytes == 24564 * MIB and rtx.vram_free_bytes == 23000 * MIB
    assert rtx.bandwidth_bytes_s == pytest.approx(1008e9, rel=0.01)  # RTX 4090 spec: 1008 GB/s
    assert not h100.unified_memory and not h100.hypothetical


def test_nvml_init_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100], init_fails=True))
    gpus, notes = detect_nvidia_gpus()
    assert gpus == ()
    assert len(notes) == 1 and "NVML not available" in notes[0] and "Driver Not Loaded" in notes[0]
    assert NvmlReader.open() is None


def test_missing_pynvml_and_zero_gpus_are_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert detect_nvidia_gpus() == ((), ("NVML not available: the nvidia-ml-py package is not installed.",))
    assert NvmlReader.open() is None
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([]))
    assert detect_nvidia_gpus() == ((), ("NVML found no NVIDIA GPU.",))
    # a count that failed is not a count of zero
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100], failing=frozenset({"nvmlDeviceGetCount"})))
    assert detect_nvidia_gpus() == ((), ("NVML could not count the NVIDIA GPUs.",))


@pytest.mark.parametrize(
    ("failing", "none_fields"),
    [
        ({"nvmlDeviceGetMemoryBusWidth"}, {"bandwidth_bytes_s"}),
        ({"nvmlDeviceGetMaxClockInfo"}, {"bandwidth_bytes_s"}),
        ({"nvmlDeviceGetMemoryInfo"}, {"vram_total_bytes", "vram_free_bytes"}),
        ({"nvmlDeviceGetCudaComputeCapability"}, {"compute_capability"}),
        ({"nvmlSystemGetDriverVersion"}, {"driver_version"}),
        (
            {"nvmlDeviceGetHandleByIndex"},
            {"vram_total_bytes", "vram_free_bytes", "compute_capability", "bandwidth_bytes_s"},
        ),
    ],
)
def test_a_failing_nvml_call_leaves_its_field_none(
    monkeypatch: pytest.MonkeyPatch, failing: set[str], none_fields: set[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML([H100], failing=frozenset(failing)))
    (gpu,), notes = detect_nvidia_gpus()
    assert notes == ()
    for name in (
        "vram_total_bytes",
        "vram_free_bytes",
        "driver_version",
        "compute_capability",
        "bandwidth_bytes_s",
    ):
        assert (getattr(gpu, name) is None) == (name in none_fields), name
    assert gpu.name == ("NVIDIA GPU 0" if "nvmlDeviceGetHandleByIndex" in failing else H100["name"])


# --- live: memory and per-process VRAM -----------------------------------------------------------


def _reader(
    monkeypatch: pytest.MonkeyPatch, *gpus: dict[str, object], failing: frozenset[str] = frozenset()
) -> NvmlReader:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(list(gpus), failing=failing))
    reader = NvmlReader.open()
    assert reader is not None
    return reader


def test_memory_of_each_gpu_and_none_where_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = _reader(monkeypatch, H100, RTX_4090)
    assert reader.memory() == (
        GpuMemory("nvidia", 0, 1559 * MIB, 81559 * MIB, 80000 * MIB),
        GpuMemory("nvidia", 1, 1564 * MIB, 24564 * MIB, 23000 * MIB),
    )
    broken = _reader(monkeypatch, H100, failing=frozenset({"nvmlDeviceGetMemoryInfo"}))
    assert broken.memory() == (GpuMemory("nvidia", 0, None, None, None),)


def test_the_drivers_own_reservation_is_not_counted_as_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle H200 (tests/gpu/results/h200-probe.json): NVML v1 says 615 MiB used, nvidia-smi 0."""
    idle = {**H100, "free": H100["total"] - 615 * MIB, "reserved": 615 * MIB}
    assert _reader(monkeypatch, idle).memory()[0].used_bytes == 0

    class OldBindings(FakeNVML):  # nvidia-ml-py before v2 structs: v1's figure, the best there is
        nvmlMemory_v2 = None

    monkeypatch.setitem(sys.modules, "pynvml", OldBindings([idle]))
    reader = NvmlReader.open()
    assert reader is not None and reader.memory()[0].used_bytes == 615 * MIB


def test_process_vram_is_attributed_where_nvml_lists_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # the pid on both GPUs (a split model): its figures add up; another process's are not counted
    reader = _reader(
        monkeypatch,
        {**H100, "procs": [(ME, 3 * GIB), (OTHER, 9 * GIB)]},
        {**RTX_4090, "procs": [(ME, 1 * GIB)]},
    )
    assert reader.process_vram([ME, OTHER]) == {ME: 4 * GIB, OTHER: 9 * GIB}
    # a Vulkan build's process is in the graphics list; "C+G" is in both lists with one figure
    vulkan = _reader(monkeypatch, {**H100, "graphics": [(ME, 2 * GIB)]})
    assert vulkan.process_vram([ME]) == {ME: 2 * GIB}
    both = _reader(monkeypatch, {**H100, "procs": [(ME, 2 * GIB)], "graphics": [(ME, 2 * GIB)]})
    assert both.process_vram([ME]) == {ME: 2 * GIB}


@pytest.mark.parametrize(
    ("gpus", "failing"),
    [
        # a container: NVML lists the host's pids, ours is not among them
        ([{**H100, "procs": [(OTHER, 3 * GIB)]}], frozenset()),
        # no process listed at all (some drivers under MIG)
        ([H100], frozenset()),
        # MIG and Windows WDDM: listed, but NVML_VALUE_NOT_AVAILABLE (None from nvidia-ml-py ≥ 11.5)
        ([{**H100, "procs": [(ME, None)]}], frozenset()),
        ([{**H100, "procs": [(ME, NOT_AVAILABLE)]}], frozenset()),  # older bindings pass it on
        # known on one GPU, unavailable on the other: the sum is unknown, not the known half
        ([{**H100, "procs": [(ME, 3 * GIB)]}, {**RTX_4090, "procs": [(ME, None)]}], frozenset()),
        # the process list itself fails
        ([{**H100, "procs": [(ME, 3 * GIB)]}], frozenset({"nvmlDeviceGetComputeRunningProcesses"})),
    ],
    ids=["container", "not-listed", "not-available", "not-available-raw", "half-known", "list-fails"],
)
def test_unattributable_vram_is_none_not_zero(
    monkeypatch: pytest.MonkeyPatch, gpus: list[dict[str, object]], failing: frozenset[str]
) -> None:
    reader = _reader(monkeypatch, *gpus, failing=failing)
    assert reader.process_vram([ME]) == {ME: None}
    assert all(m.used_bytes is not None for m in reader.memory())  # the GPUs' own figures still read

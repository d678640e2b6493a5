"""The file ranges a loaded model hands back (``estimate.read_once_ranges``): the header and exactly
the bytes the estimate calls reclaimable, in whole pages, never a byte of a tensor read every token."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.advice.estimate import RunSettings, estimate, read_once_ranges
from app.core.model.source import model_from_gguf

PAGE = 4096


def _extents(path: Path, settings: RunSettings) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(read-once, read-every-token) byte extents of the file's tensors, worked out here from the
    rules the estimate documents: a repackable type with rows in multiples of 8, or a GPU layer."""
    m = model_from_gguf(path)
    assert m.data_offset_bytes is not None
    once, every = [(0, m.data_offset_bytes)], []  # the header: parsed at load
    n_gpu = settings.n_gpu_layers
    for t in m.tensors:
        lo = m.data_offset_bytes + t.offset_bytes
        layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else None
        on_gpu = layer is not None and layer >= m.n_layer + 1 - n_gpu
        on_gpu = on_gpu or (t.name.startswith("output") and n_gpu > 0)
        repacked = (not settings.discrete_gpu and t.type_name == "Q4_K" and t.shape[1] % 8 == 0
                    and "AVX2" in settings.cpu_isa)  # fmt: skip
        (once if on_gpu or repacked else every).append((lo, lo + t.n_bytes))
    return once, every


def _check(path: Path, settings: RunSettings) -> tuple[tuple[int, int], ...]:
    m = model_from_gguf(path)
    ranges = read_once_ranges(m, settings)
    once, every = _extents(path, settings)
    size = path.stat().st_size
    prev_end = -1
    for off, n in ranges:
        assert off % PAGE == 0 and n % PAGE == 0 and n > 0
        assert off > prev_end and off + n <= size  # sorted, apart, inside the file
        prev_end = off + n
        for lo, hi in every:
            assert hi <= off or lo >= off + n, "a page of a tensor read every token is handed back"
        assert any(lo <= off < hi for lo, hi in once)
    # Everything read once is handed back, but for the pages it shares with its neighbours.
    handed = sum(n for _, n in ranges)
    read_once = sum(hi - lo for lo, hi in once)
    assert read_once - 2 * PAGE * len(once) <= handed <= read_once
    return ranges


def test_repacked_tensors_on_the_cpu(gemma3_path: Path) -> None:
    s = RunSettings(n_ctx=1024, cpu_isa=("AVX2",))
    ranges = _check(gemma3_path, s)
    header = _header(gemma3_path)
    assert ranges[0] == header
    assert len(ranges) > 1, "Gemma-3-270M Q4_K_M has Q4_K tensors that AVX2 repacks"
    reclaimable = estimate(model_from_gguf(gemma3_path), settings=s).device("CPU").reclaimable_bytes
    assert abs(sum(n for _, n in ranges[1:]) - reclaimable) <= 2 * PAGE * len(ranges)


def _header(path: Path) -> tuple[int, int]:
    """The header's whole pages: the metadata llama.cpp parses (Gemma's 262k-token vocabulary)."""
    data_offset = model_from_gguf(path).data_offset_bytes
    assert data_offset is not None and data_offset > PAGE
    return (0, data_offset // PAGE * PAGE)


def test_no_repacking_no_ranges(gemma3_path: Path) -> None:
    # A CPU without AVX2 (nor ARM's dot product) keeps every tensor where it is mapped.
    ranges = read_once_ranges(model_from_gguf(gemma3_path), RunSettings(cpu_isa=("SSE4_2",)))
    assert ranges == (_header(gemma3_path),)


@pytest.mark.parametrize("n_gpu_layers", [6, 19])
def test_layers_uploaded_to_a_gpu(gemma3_path: Path, n_gpu_layers: int) -> None:
    s = RunSettings(n_ctx=1024, n_gpu_layers=n_gpu_layers, has_gpu=True, gpu_backend="cuda")
    ranges = _check(gemma3_path, s)
    assert ranges


def test_without_mmap_or_layout_nothing(gemma3_path: Path, smollm2_path: Path) -> None:
    m = model_from_gguf(gemma3_path)
    assert read_once_ranges(m, RunSettings(use_mmap=False)) == ()
    from dataclasses import replace

    assert read_once_ranges(replace(m, data_offset_bytes=None), RunSettings()) == ()
    # SmolLM2 is Q4_1 with tied embeddings: nothing is repacked, every tensor is read every token.
    ranges = read_once_ranges(model_from_gguf(smollm2_path), RunSettings(cpu_isa=("AVX2",)))
    assert ranges == (_header(smollm2_path),)

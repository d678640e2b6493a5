"""Memory prediction: hand-checked formulas, llama.cpp's own numbers for the real models, and
properties (more context or more bits never needs less memory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.core.advice.buffers import kv_cells
from app.core.advice.estimate import RunSettings, estimate
from app.core.errors import EstimateError
from app.core.model.gguf_header import GGUFHeader, TensorInfo, read_gguf_file
from app.core.model.info import ModelInfo, model_info_from_header

MIB = 1 << 20


def _info(path: Path) -> ModelInfo:
    return model_info_from_header(read_gguf_file(path), source=str(path), source_kind="gguf")


def probe(spec: dict[str, object]) -> dict[str, object]:
    """llama.cpp's own buffer sizes, from a child process (app.engine.memory_probe)."""
    out = subprocess.run(
        [sys.executable, "-m", "app.engine.memory_probe", json.dumps(spec)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def llama_like(
    e: int, ff: int, n_layer: int, heads: int, kv_heads: int, vocab: int, dtype: str = "F16"
) -> ModelInfo:
    hd = e // heads
    tensors = [TensorInfo("token_embd.weight", (e, vocab), dtype)]
    for i in range(n_layer):
        tensors += [
            TensorInfo(f"blk.{i}.attn_norm.weight", (e,), "F32"),
            TensorInfo(f"blk.{i}.attn_q.weight", (e, heads * hd), dtype),
            TensorInfo(f"blk.{i}.attn_k.weight", (e, kv_heads * hd), dtype),
            TensorInfo(f"blk.{i}.attn_v.weight", (e, kv_heads * hd), dtype),
            TensorInfo(f"blk.{i}.attn_output.weight", (heads * hd, e), dtype),
            TensorInfo(f"blk.{i}.ffn_norm.weight", (e,), "F32"),
            TensorInfo(f"blk.{i}.ffn_gate.weight", (e, ff), dtype),
            TensorInfo(f"blk.{i}.ffn_up.weight", (e, ff), dtype),
            TensorInfo(f"blk.{i}.ffn_down.weight", (ff, e), dtype),
        ]
    tensors += [TensorInfo("output_norm.weight", (e,), "F32"), TensorInfo("output.weight", (e, vocab), dtype)]
    meta = {
        "general.architecture": "llama", "general.file_type": 1, "llama.block_count": n_layer,
        "llama.embedding_length": e, "llama.feed_forward_length": ff, "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv_heads, "llama.context_length": 131072, "llama.vocab_size": vocab,
    }  # fmt: skip
    return model_info_from_header(GGUFHeader(meta, tuple(tensors)), source="synthetic", source_kind="gguf")


# --- hand-checked formulas -------------------------------------------------------------------


def test_kv_cache_hand_checked(smollm2_path: Path) -> None:
    m = _info(smollm2_path)
    # 30 layers x 4096 cells x (3 KV heads x 64 dims) x 2 bytes, for K and for V.
    assert estimate(m, None, RunSettings(n_ctx=4096)).device("CPU").kv_bytes == 30 * 4096 * 192 * 2 * 2
    # q8_0: 34 bytes per 32 elements; pad 1000 -> 1024 cells.
    e = estimate(m, None, RunSettings(n_ctx=1000, type_k="Q8_0", type_v="Q8_0"))
    assert e.kv_cells == 1024
    assert e.device("CPU").kv_bytes == 30 * 1024 * (192 // 32 * 34) * 2


def test_sliding_window_cache_hand_checked(gemma3_path: Path) -> None:
    m = _info(gemma3_path)
    assert m.sliding_window == 512 and sum(m.swa_layers) == 15  # pattern 6: 5 of 6 layers slide
    full, swa = kv_cells(m, RunSettings(n_ctx=4096))
    assert (full, swa) == (4096, 1024)  # pad(min(4096, 512 + 512), 256)
    per_cell = 1 * 256 * 2 * 2  # 1 KV head x 256 dims x f16, K and V
    assert (
        estimate(m, None, RunSettings(n_ctx=4096)).device("CPU").kv_bytes == (3 * 4096 + 15 * 1024) * per_cell
    )
    full_swa = estimate(m, None, RunSettings(n_ctx=4096, swa_full=True)).device("CPU").kv_bytes
    assert full_swa == 18 * 4096 * per_cell


def test_quantized_v_needs_flash_attention(smollm2_path: Path) -> None:
    with pytest.raises(EstimateError, match="flash attention"):
        estimate(_info(smollm2_path), None, RunSettings(type_v="Q8_0", flash_attn=False))


def test_gpu_layer_placement() -> None:
    m = llama_like(1024, 4096, 8, 16, 4, 32000)
    layer = m.tensors[1:10]
    layer_bytes = sum(t.n_bytes for t in layer)
    output = 1024 * 4 + 1024 * 32000 * 2
    one = estimate(m, None, RunSettings(n_gpu_layers=1))
    assert one.device("GPU0").weights_bytes == output  # the output layer goes first
    three = estimate(m, None, RunSettings(n_gpu_layers=3))
    assert three.device("GPU0").weights_bytes == output + 2 * layer_bytes
    assert three.device("GPU0").n_layers == 2
    full = estimate(m, None, RunSettings(n_gpu_layers=99))
    assert full.device("GPU0").n_layers == 8
    # token_embd never leaves the CPU; with mmap only the span of CPU tensors stays resident.
    assert full.device("CPU").weights_bytes == 0  # untied input embedding: never paged in


def test_tied_embedding_is_duplicated_on_gpu(smollm2_path: Path) -> None:
    m = _info(smollm2_path)
    embd = next(t for t in m.tensors if t.name == "token_embd.weight")
    e = estimate(m, None, RunSettings(n_gpu_layers=1))
    assert e.device("GPU0").weights_bytes == embd.n_bytes + 576 * 4  # copy + output_norm


# --- llama.cpp's own numbers --------------------------------------------------------------


@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
@pytest.mark.parametrize(("n_ctx", "fa"), [(512, True), (4096, True), (4096, False), (16384, False)])
def test_compute_and_output_buffers_match_llama_cpp_dry_run(
    which: str, n_ctx: int, fa: bool, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(which)
    ours = estimate(_info(path), None, RunSettings(n_ctx=n_ctx, flash_attn=fa)).device("CPU")
    theirs = probe({"model": str(path), "n_ctx": n_ctx, "flash_attn": "on" if fa else "off", "dry_run": True})
    compute = theirs["compute_buffers"]["CPU"]
    assert abs(ours.compute_bytes - compute) / compute < (0.01 if "smol" in path.name.lower() else 0.10)
    assert abs(ours.output_bytes - theirs["output_buffers"]["CPU"]) < 0.01 * MIB


@pytest.mark.slow
@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_weights_kv_repack_match_a_real_load(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    ours = estimate(_info(path), None, RunSettings(n_ctx=4096, cpu_isa=_isa())).device("CPU")
    run = probe({"model": str(path), "n_ctx": 4096, "prompt_tokens": 64, "decode_tokens": 2})
    assert abs(ours.kv_bytes - run["kv_buffers"]["CPU"]) < 0.01 * MIB
    mapped = run["model_buffers"].get("CPU_Mapped", 0)
    assert abs(ours.weights_bytes + ours.reclaimable_bytes - mapped) < 0.02 * mapped
    assert abs(ours.repack_bytes - run["model_buffers"].get("CPU_REPACK", 0)) < 0.05 * MIB


def _isa() -> tuple[str, ...]:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return tuple(f.upper() for f in ("avx2", "avx512f") if f in flags)


# --- properties ---------------------------------------------------------------------------

shapes = st.tuples(
    st.sampled_from([512, 768, 1024, 2048]),  # n_embd (multiples of 256: no block fallbacks)
    st.sampled_from([1024, 2816, 4096, 8192]),  # n_ff
    st.integers(1, 6),  # layers
    st.sampled_from([(8, 8), (8, 2), (16, 4), (16, 1)]),  # heads, kv heads
)


@settings(max_examples=25, deadline=None)
@given(shapes, st.sampled_from([256, 1000, 4096, 9000]), st.integers(1, 20000), st.booleans())
def test_more_context_never_needs_less_memory(shape, ctx: int, extra: int, fa: bool) -> None:
    e, ff, n, (h, kv) = shape
    m = llama_like(e, ff, n, h, kv, 4096)
    small = estimate(m, "Q4_K_M", RunSettings(n_ctx=ctx, flash_attn=fa))
    big = estimate(m, "Q4_K_M", RunSettings(n_ctx=ctx + extra, flash_attn=fa))
    assert big.ram_bytes >= small.ram_bytes
    assert big.device("CPU").kv_bytes >= small.device("CPU").kv_bytes


# Pairs where the second has more bits for every tensor role (llama-quant.cpp mixes).
MORE_BITS = [("Q2_K", "Q3_K_S"), ("Q3_K_S", "Q3_K_M"), ("Q3_K_M", "Q3_K_L"), ("Q4_K_S", "Q4_K_M"),
             ("Q4_K_M", "Q5_K_M"), ("Q5_K_S", "Q5_K_M"), ("Q5_K_M", "Q6_K"), ("Q6_K", "Q8_0"),
             ("Q8_0", "F16"), ("Q4_0", "Q4_1"), ("Q5_0", "Q5_1")]  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(shapes, st.sampled_from(MORE_BITS), st.booleans())
def test_more_bits_never_need_less_memory(shape, pair: tuple[str, str], mmap: bool) -> None:
    e, ff, n, (h, kv) = shape
    m = llama_like(e, ff, n, h, kv, 4096)
    lo, hi = (estimate(m, q, RunSettings(use_mmap=mmap, cpu_isa=())) for q in pair)
    assert hi.file_bytes >= lo.file_bytes
    assert hi.ram_bytes >= lo.ram_bytes


@settings(max_examples=20, deadline=None)
@given(shapes, st.sampled_from([("Q4_0", "Q8_0"), ("Q8_0", "F16"), ("F16", "F32"), ("Q4_0", "Q5_1")]))
def test_more_kv_bits_never_need_less_memory(shape, pair: tuple[str, str]) -> None:
    e, ff, n, (h, kv) = shape
    m = llama_like(e, ff, n, h, kv, 4096)
    assume(kv * (e // h) % 32 == 0)  # quantized KV rows must be whole 32-element blocks
    lo, hi = (estimate(m, "Q4_K_M", RunSettings(type_k=t, type_v=t)).device("CPU").kv_bytes for t in pair)
    assert hi >= lo


def test_kv_type_that_does_not_fit_the_head_size() -> None:
    m = llama_like(768, 1024, 1, 16, 1, 4096)  # head size 48
    with pytest.raises(EstimateError, match="head size"):
        estimate(m, "Q4_K_M", RunSettings(type_k="Q4_0", type_v="Q4_0"))


@settings(max_examples=20, deadline=None)
@given(shapes, st.integers(0, 7))
def test_offloading_moves_memory_from_ram_to_vram(shape, ngl: int) -> None:
    e, ff, n, (h, kv) = shape
    m = llama_like(e, ff, n, h, kv, 4096)
    a = estimate(m, "Q4_K_M", RunSettings(n_gpu_layers=ngl))
    b = estimate(m, "Q4_K_M", RunSettings(n_gpu_layers=ngl + 1))
    assert b.vram_bytes >= a.vram_bytes
    assert (
        b.device("CPU").weights_bytes + b.device("CPU").kv_bytes
        <= a.device("CPU").weights_bytes + a.device("CPU").kv_bytes
    )


def test_partly_filled_context_touches_less_compute(smollm2_path: Path) -> None:
    m = _info(smollm2_path)
    s = RunSettings(n_ctx=16384, flash_attn=False)
    full = estimate(m, None, s)
    short = estimate(m, None, s, filled_tokens=520)
    assert short.device("CPU").compute_bytes < full.device("CPU").compute_bytes
    assert short.device("CPU").kv_bytes == full.device("CPU").kv_bytes  # the cache is cleared: all resident
    assert (
        estimate(m, None, s, filled_tokens=16384).device("CPU").compute_bytes
        == full.device("CPU").compute_bytes
    )

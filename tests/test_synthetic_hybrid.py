"""Synthetic hybrid GGUFs (recurrent + attention layers): llama.cpp loads, runs and quantizes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import pytest

from app.core.model.gguf_header import read_gguf_file
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.quant_recipe import quantized_tensors
from app.core.model.source import model_from_gguf
from tests.synthetic import quantize_gguf, synthetic_header, write_synthetic_gguf
from tests.test_synthetic import generate

pytest.importorskip("llama_cpp")

# Gated DeltaNet layers, a gated-query attention layer and a draft-head (MTP) block that llama.cpp
# skips; more value heads than key heads, as in Qwen3.5-2B and up.
TINY_QWEN35: dict[str, Any] = {
    "model_type": "qwen3_5_text", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024,
    "max_position_embeddings": 4096, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 32,
    "linear_value_head_dim": 32, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
    "layer_types": ["linear_attention"] * 3 + ["full_attention"], "mtp_num_hidden_layers": 1,
    "rope_parameters": {"mrope_section": [11, 11, 10], "rope_theta": 1e7, "partial_rotary_factor": 0.25},
}  # fmt: skip
# Qwen3.5's MoE (Qwen3.5-35B-A3B's layout): routed experts and a gated shared expert, in every block.
TINY_QWEN35_MOE: dict[str, Any] = {
    **TINY_QWEN35, "model_type": "qwen3_5_moe_text", "num_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 128, "shared_expert_intermediate_size": 128,
}  # fmt: skip
# Short convolutions and attention; the older full_attn_idxs spelling.
TINY_LFM2: dict[str, Any] = {
    "model_type": "lfm2", "hidden_size": 256, "block_ff_dim": 768, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 4096,
    "full_attn_idxs": [2],
}  # fmt: skip
# Mamba-2 and NoPE attention, a dense shared MLP.
TINY_GRANITE_H: dict[str, Any] = {
    "model_type": "granitemoehybrid", "hidden_size": 256, "intermediate_size": 512,
    "shared_intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 1024, "max_position_embeddings": 4096, "num_local_experts": 0, "num_experts_per_tok": 0,
    "mamba_n_heads": 8, "mamba_d_head": 64, "mamba_d_state": 32, "mamba_n_groups": 1, "mamba_d_conv": 4,
    "layer_types": ["mamba", "attention", "mamba", "mamba"], "tie_word_embeddings": True,
}  # fmt: skip
# Granite 4.0-H Tiny's layout: routed experts with a shared expert.
TINY_GRANITE_H_MOE: dict[str, Any] = {
    **TINY_GRANITE_H, "intermediate_size": 128, "num_local_experts": 4, "num_experts_per_tok": 2,
}  # fmt: skip
TINY = [TINY_QWEN35, TINY_QWEN35_MOE, TINY_LFM2, TINY_GRANITE_H, TINY_GRANITE_H_MOE]
IDS = ["qwen35", "qwen35moe", "lfm2", "granitehybrid", "granitehybrid-moe"]


@pytest.mark.parametrize("config", TINY, ids=IDS)
def test_tiny_hybrid_round_trip_load_generate_and_quantize(config: dict[str, Any], tmp_path: Path) -> None:
    path = write_synthetic_gguf(config, tmp_path / "tiny.gguf")
    planned = header_from_hf_config(config)
    ours = read_gguf_file(path)
    assert {t.name: (t.shape, t.type_name) for t in ours.tensors} == {
        t.name: (t.shape, t.type_name) for t in planned.tensors
    }
    assert ours.metadata["general.architecture"] == planned.architecture
    for key, value in planned.metadata.items():  # per-layer arrays included
        assert ours.metadata[key] == pytest.approx(value), key

    model = model_from_gguf(path)
    assert model.has_recurrent and any(model.n_head_kv)
    assert len(generate(path)) == 4

    q4 = quantize_gguf(path, tmp_path / "tiny-Q4_K_M.gguf", "Q4_K_M")
    assert read_gguf_file(q4).metadata["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    # The quantizer treats the new tensors as quant_recipe predicts (F32 states, fallbacks, ...), except
    # that llama-quant.cpp counts dimensions as ggml_n_dims does: Qwen3.5's (n_embd, 1) shared-expert
    # gate is a vector to it and stays F32, which quant_recipe does not know yet.
    real = {t.name: t.type_name for t in read_gguf_file(q4).tensors}
    predicted = {t.name: t.type_name for t in quantized_tensors(model, "Q4_K_M")}
    vectors = {t.name for t in model.tensors if t.shape[1:] == (1,)}
    assert {k: v for k, v in predicted.items() if k not in vectors} == {
        k: v for k, v in real.items() if k not in vectors
    }
    assert all(real[name] == "F32" for name in vectors)
    assert model_from_gguf(q4).recurrent_layers == model.recurrent_layers
    assert len(generate(q4)) == 4


def test_truncating_cuts_per_layer_arrays_and_the_draft_head(tmp_path: Path) -> None:
    header = synthetic_header(TINY_QWEN35, n_layers=2)
    assert header.metadata["qwen35.block_count"] == 2
    assert header.metadata["qwen35.attention.recurrent_layers"] == [True, True]
    assert "qwen35.nextn_predict_layers" not in header.metadata
    four = synthetic_header({**TINY_QWEN35, "mtp_num_hidden_layers": 0}, n_layers=2)  # 4 blocks, 4 sections
    assert four.metadata["qwen35.rope.dimension_sections"] == [11, 11, 10, 0]  # not a per-layer array
    path = write_synthetic_gguf(TINY_LFM2, tmp_path / "lfm2.gguf", n_layers=3)
    assert read_gguf_file(path).metadata["lfm2.attention.head_count_kv"] == [0, 0, 2]
    assert model_from_gguf(path).recurrent_layers == (True, True, False)
    assert len(generate(path)) == 4


def test_state_tensors_start_stable(tmp_path: Path) -> None:
    """A = -exp(A_log) must be negative, as the converter writes it, or the state grows unbounded."""
    path = write_synthetic_gguf(TINY_GRANITE_H, tmp_path / "g.gguf", dtype="F32")
    tensors = {t.name: t.data for t in gguf.GGUFReader(str(path)).tensors}
    assert (tensors["blk.0.ssm_a"] == -1.0).all()
    assert (tensors["blk.0.ssm_d"] == 1.0).all()
    assert (tensors["blk.0.ssm_dt.bias"] == 0.0).all()

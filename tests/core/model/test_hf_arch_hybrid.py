"""config.json → GGUF header for the hybrid families, checked against published parameter counts and
the shapes llama.cpp's loaders create (src/models/{qwen35,lfm2,granite-hybrid}.cpp)."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.errors import CorruptModelError, UnsupportedArchitectureError
from app.core.model.gguf_header import GGUFHeader
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.hf_names import gguf_tensor_name
from tests.hybrid_models import (
    GRANITE_4_H_350M,
    LFM2_350M,
    LFM2_350M_PARAMS,
    LFM2_700M,
    LFM2_700M_PARAMS,
    QWEN35_08B,
    QWEN35_35B_A3B,
)


def shapes(header: GGUFHeader) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in header.tensors}


def types(header: GGUFHeader) -> dict[str, str]:
    return {t.name: t.type_name for t in header.tensors}


@pytest.mark.parametrize(
    ("config", "params"), [(LFM2_350M, LFM2_350M_PARAMS), (LFM2_700M, LFM2_700M_PARAMS)], ids=["350m", "700m"]
)
def test_lfm2_parameter_count_is_the_model_cards(config: dict[str, Any], params: int) -> None:
    assert sum(t.n_elements for t in header_from_hf_config(config).tensors) == params


def test_lfm2_layers_ffn_width_and_keys() -> None:
    h = header_from_hf_config(LFM2_350M)
    s, meta = shapes(h), h.metadata
    assert h.architecture == "lfm2"
    assert meta["lfm2.feed_forward_length"] == 4608  # 2/3 of 6656, rounded up to 256 (llama.cpp: LFM2-350M)
    assert meta["lfm2.attention.head_count_kv"] == [0, 0, 8, 0, 0, 8, 0, 0, 8, 0, 8, 0, 8, 0, 8, 0]
    assert meta["lfm2.shortconv.l_cache"] == 3
    assert meta["lfm2.attention.layer_norm_rms_epsilon"] == 1e-5
    assert s["token_embd_norm.weight"] == (1024,) and "output.weight" not in s  # tied; LFM2's final norm
    assert s["blk.0.shortconv.conv.weight"] == (3, 1024) and types(h)["blk.0.shortconv.conv.weight"] == "F32"
    assert s["blk.0.shortconv.in_proj.weight"] == (1024, 3072)
    assert "blk.0.attn_q.weight" not in s and "blk.2.shortconv.in_proj.weight" not in s
    assert s["blk.2.attn_k.weight"] == (1024, 512) and s["blk.2.attn_q_norm.weight"] == (64,)
    # The older spelling lists the attention layers instead
    listed = header_from_hf_config(LFM2_700M).metadata["lfm2.attention.head_count_kv"]
    assert [i for i, n in enumerate(listed) if n] == LFM2_700M["full_attn_idxs"]


def test_granite_hybrid_mamba2_shapes_and_keys() -> None:
    h = header_from_hf_config(GRANITE_4_H_350M)
    s, t, meta = shapes(h), types(h), h.metadata
    assert h.architecture == "granitehybrid"
    # d_inner = 2·768; in_proj = 2·d_inner + 2·groups·d_state + heads (granite-hybrid.cpp d_in_proj)
    assert s["blk.0.ssm_in.weight"] == (768, 2 * 1536 + 2 * 128 + 48)
    assert s["blk.0.ssm_conv1d.weight"] == (4, 1536 + 2 * 128) and t["blk.0.ssm_conv1d.weight"] == "F32"
    assert s["blk.0.ssm_a"] == s["blk.0.ssm_d"] == (1, 48) and t["blk.0.ssm_a"] == "F32"
    assert s["blk.0.ssm_norm.weight"] == (1536, 1)
    assert s["blk.10.attn_q.weight"] == (768, 768) and "blk.10.ssm_in.weight" not in s
    assert s["blk.10.ffn_gate.weight"] == s["blk.0.ffn_up.weight"] == (768, 2048)  # the shared MLP
    assert meta["granitehybrid.attention.head_count_kv"] == [4 if k == "attention" else 0
                                                             for k in GRANITE_4_H_350M["layer_types"]]  # fmt: skip
    assert meta["granitehybrid.context_length"] == 2**20  # NoPE: the converter's arbitrary length
    assert (meta["granitehybrid.ssm.conv_kernel"], meta["granitehybrid.ssm.inner_size"]) == (4, 1536)
    assert (meta["granitehybrid.ssm.state_size"], meta["granitehybrid.ssm.group_count"]) == (128, 1)
    assert meta["granitehybrid.ssm.time_step_rank"] == 48
    assert meta["granitehybrid.expert_count"] == 0 and meta["granitehybrid.residual_scale"] == 0.246
    # IBM publishes 340M parameters for it
    assert sum(x.n_elements for x in h.tensors) == pytest.approx(340e6, rel=0.01)


def test_qwen35_gated_delta_net_attention_and_draft_head() -> None:
    h = header_from_hf_config(QWEN35_08B)
    s, t, meta = shapes(h), types(h), h.metadata
    assert h.architecture == "qwen35"
    # key_dim = 16 heads · 128, value_dim = 16 · 128: qkv is 2·key_dim + value_dim wide (qwen35.cpp)
    assert s["blk.0.attn_qkv.weight"] == (1024, 6144) and s["blk.0.attn_gate.weight"] == (1024, 2048)
    assert s["blk.0.ssm_conv1d.weight"] == (4, 6144) and t["blk.0.ssm_conv1d.weight"] == "F32"
    assert s["blk.0.ssm_beta.weight"] == s["blk.0.ssm_alpha.weight"] == (1024, 16)
    assert s["blk.0.ssm_a"] == s["blk.0.ssm_dt.bias"] == (16,) and s["blk.0.ssm_norm.weight"] == (128,)
    assert s["blk.3.attn_q.weight"] == (1024, 2 * 8 * 256)  # the query and its gate
    assert s["blk.3.attn_output.weight"] == (8 * 256, 1024) and "blk.3.attn_qkv.weight" not in s
    assert s["blk.24.nextn.eh_proj.weight"] == (2048, 1024) and "blk.25.attn_norm.weight" not in s
    assert meta["qwen35.block_count"] == 25 and meta["qwen35.nextn_predict_layers"] == 1
    assert meta["qwen35.attention.recurrent_layers"] == [(i + 1) % 4 != 0 for i in range(24)] + [False]
    assert meta["qwen35.rope.dimension_sections"] == [11, 11, 10, 0]
    assert meta["qwen35.rope.dimension_count"] == 64  # 256 · partial_rotary_factor 0.25
    assert (meta["qwen35.ssm.inner_size"], meta["qwen35.ssm.group_count"]) == (2048, 16)
    assert meta["qwen35.full_attention_interval"] == 4 and meta["qwen35.context_length"] == 262144
    assert "output.weight" not in s  # tied


def test_qwen35_moe_routed_and_shared_experts() -> None:
    h = header_from_hf_config(QWEN35_35B_A3B)
    s, t, meta = shapes(h), types(h), h.metadata
    assert h.architecture == "qwen35moe"
    assert s["blk.0.ffn_gate_exps.weight"] == (2048, 512, 256) and s["blk.0.ffn_down_exps.weight"] == (
        512,
        2048,
        256,
    )
    assert s["blk.0.ffn_gate_inp.weight"] == (2048, 256) and t["blk.0.ffn_gate_inp.weight"] == "F32"
    assert s["blk.0.ffn_gate_inp_shexp.weight"] == (2048, 1) and t["blk.0.ffn_gate_inp_shexp.weight"] == "F32"
    assert s["blk.0.ffn_up_shexp.weight"] == (2048, 512) and "blk.0.ffn_up.weight" not in s
    assert s["blk.0.attn_qkv.weight"] == (2048, 2 * 16 * 128 + 32 * 128)  # 32 value heads, 16 key heads
    assert s["blk.40.ffn_gate_exps.weight"] == (2048, 512, 256)  # the draft head has experts too
    assert (meta["qwen35moe.expert_count"], meta["qwen35moe.expert_used_count"]) == (256, 8)
    assert meta["qwen35moe.expert_shared_feed_forward_length"] == 512
    assert meta["qwen35moe.attention.recurrent_layers"] == [(i + 1) % 4 != 0 for i in range(40)] + [False]
    total = sum(x.n_elements for x in h.tensors)
    assert total == pytest.approx(35e9, rel=0.02)  # "35B" (the vision tower is a separate file)


def test_qwen35_without_layer_types_uses_the_interval() -> None:
    text = {k: v for k, v in QWEN35_08B["text_config"].items() if k != "layer_types"}
    h = header_from_hf_config({**QWEN35_08B, "text_config": {**text, "full_attention_interval": 3}})
    flags = h.metadata["qwen35.attention.recurrent_layers"]  # AutoConfig derives the layer types
    assert flags == [(i + 1) % 3 != 0 for i in range(24)] + [False]
    assert "blk.2.attn_q.weight" in shapes(h) and "blk.3.attn_qkv.weight" in shapes(h)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"layer_types": ["conv"] * 3}, "layer_types"),
        ({"layer_types": ["conv"] * 15 + ["mamba"]}, "layer_types"),
        ({"conv_L_cache": 10**6}, "conv_L_cache"),
        ({"block_auto_adjust_ff_dim": "yes"}, "block_auto_adjust_ff_dim"),
        ({"norm_eps": float("nan")}, "norm_eps"),
    ],
)
def test_bad_hybrid_values_are_one_error_naming_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(CorruptModelError, match=key):
        header_from_hf_config({**LFM2_350M, **change})


def test_granite_hybrid_needs_its_layer_types() -> None:
    cfg = {k: v for k, v in GRANITE_4_H_350M.items() if k != "layer_types"}
    with pytest.raises(UnsupportedArchitectureError, match="layer_types"):
        header_from_hf_config(cfg)
    with pytest.raises(CorruptModelError, match="mamba_n_heads"):
        header_from_hf_config({**GRANITE_4_H_350M, "mamba_n_heads": 100})  # 1536 is not 100 heads wide


@pytest.mark.parametrize(
    ("hf_name", "arch", "expected"),
    [
        ("model.language_model.layers.0.linear_attn.in_proj_qkv.weight", "qwen3_5", "blk.0.attn_qkv.weight"),
        ("model.layers.0.linear_attn.A_log", "qwen3_5_text", "blk.0.ssm_a"),
        ("model.layers.0.linear_attn.dt_bias", "qwen35", "blk.0.ssm_dt.bias"),
        ("model.layers.7.mlp.shared_expert_gate.weight", "qwen3_5_moe", "blk.7.ffn_gate_inp_shexp.weight"),
        ("model.layers.7.mlp.experts.12.down_proj.weight", "qwen35moe", "blk.7.ffn_down_exps.weight"),
        ("model.layers.3.post_attention_layernorm.weight", "qwen35", "blk.3.post_attention_norm.weight"),
        ("mtp.fc.weight", "qwen35", None),  # renamed by the converter into the draft-head block
        ("model.layers.1.conv.in_proj.weight", "lfm2", "blk.1.shortconv.in_proj.weight"),
        ("model.embedding_norm.weight", "lfm2", "token_embd_norm.weight"),
        ("model.layers.2.feed_forward.w2.weight", "lfm2", "blk.2.ffn_down.weight"),
        ("model.layers.5.mamba.in_proj.weight", "granitemoehybrid", "blk.5.ssm_in.weight"),
        ("model.layers.5.mamba.D", "granitehybrid", "blk.5.ssm_d"),
        ("model.layers.5.shared_mlp.output_linear.weight", "granitehybrid", "blk.5.ffn_down.weight"),
    ],
)
def test_gguf_tensor_name_hybrids(hf_name: str, arch: str, expected: str | None) -> None:
    assert gguf_tensor_name(hf_name, arch) == expected

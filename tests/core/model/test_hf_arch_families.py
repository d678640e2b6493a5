"""config.json → GGUF header for the families with modules of their own: gpt-oss, Gemma 4, GLM-4.5 MoE,
GLM-4.7-Flash (deepseek2), LFM2-MoE and Mistral 3.

The expectations are what llama.cpp's converter wrote for tiny checkpoints of each architecture
(run on random weights with the vendored ``convert_hf_to_gguf.py``), whose configs are in
``tests/core/model/tiny_families.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.core.errors import CorruptModelError
from app.core.model.gguf_header import GGUFHeader
from app.core.model.hf_arch import gguf_arch, header_from_hf_config
from app.core.model.hf_names import gguf_tensor_name
from tests.core.model.tiny_families import (
    GEMMA4_E2B,
    GEMMA4_MOE,
    GLM4_MOE,
    GLM4_MOE_LITE,
    GPT_OSS,
    LFM2_MOE,
    MISTRAL3,
)


def shapes(h: GGUFHeader) -> dict[str, tuple[tuple[int, ...], str]]:
    return {t.name: (t.shape, t.type_name) for t in h.tensors}


def test_gpt_oss_keeps_mxfp4_experts_and_has_sinks_and_biases() -> None:
    h = header_from_hf_config(GPT_OSS)
    s = shapes(h)
    assert h.architecture == "gpt-oss"
    assert h.metadata["general.file_type"] == 38  # MOSTLY_MXFP4_MOE, whatever the float outtype
    assert s["blk.0.ffn_gate_exps.weight"] == ((96, 64, 8), "MXFP4")
    assert s["blk.0.ffn_down_exps.weight"] == ((64, 96, 8), "MXFP4")
    assert s["blk.0.attn_sinks.weight"] == ((8,), "F32")
    assert s["blk.0.ffn_gate_inp.weight"] == ((96, 8), "F32")
    assert s["blk.0.ffn_down_exps.bias"] == ((96, 8), "F32")
    assert s["blk.0.attn_output.bias"] == ((96,), "F32")
    assert s["blk.0.attn_q.weight"] == ((96, 128), "F16")  # 8 heads of 16: wider than the model
    assert s["output.weight"] == ((96, 500), "F16")
    assert len(h.tensors) == 3 + 4 * 19
    m = h.metadata
    assert m["gpt-oss.attention.sliding_window"] == 128 and m["gpt-oss.expert_feed_forward_length"] == 64
    assert (
        m["gpt-oss.rope.scaling.yarn_beta_fast"] == 32.0 and m["gpt-oss.rope.scaling.yarn_beta_slow"] == 1.0
    )
    assert m["gpt-oss.rope.scaling.original_context_length"] == 4096


def test_gpt_oss_without_mxfp4_follows_the_outtype() -> None:
    bf16 = {k: v for k, v in GPT_OSS.items() if k != "quantization_config"}
    h = header_from_hf_config(bf16, dtype="BF16")
    assert h.metadata["general.file_type"] == 32
    assert shapes(h)["blk.0.ffn_up_exps.weight"] == ((96, 64, 8), "BF16")
    q8 = header_from_hf_config(GPT_OSS, dtype="Q8_0")
    assert q8.metadata["general.file_type"] == 7  # an mxfp4 checkpoint at Q8_0 keeps the Q8_0 ftype
    assert shapes(q8)["blk.0.ffn_up_exps.weight"][1] == "MXFP4"


def test_gemma4_blocks_differ_by_kind_and_by_kv_sharing() -> None:
    h = header_from_hf_config(GEMMA4_E2B)
    s, m = shapes(h), h.metadata
    assert s["blk.0.attn_k.weight"][0] == (64, 16) and s["blk.0.attn_q.weight"][0] == (64, 64)  # sliding
    assert s["blk.4.attn_k.weight"][0] == (64, 32) and s["blk.4.attn_q.weight"][0] == (64, 128)  # full
    assert s["blk.4.attn_output.weight"][0] == (128, 64)
    for bid in range(5, 10):  # the last 5 blocks read the KV of blocks 3 (sliding) and 4 (full)
        assert f"blk.{bid}.attn_k.weight" not in s and f"blk.{bid}.attn_v.weight" not in s
        assert f"blk.{bid}.attn_k_norm.weight" not in s and f"blk.{bid}.attn_q.weight" in s
        assert s[f"blk.{bid}.ffn_up.weight"][0] == (64, 96)  # double-wide MLP on shared blocks
    assert s["blk.4.ffn_up.weight"][0] == (64, 48)
    assert s["per_layer_token_embd.weight"][0] == (80, 500) and s["per_layer_model_proj.weight"][0] == (
        64,
        80,
    )
    assert s["blk.3.inp_gate.weight"][0] == (64, 8) and s["blk.3.proj.weight"][0] == (8, 64)
    assert s["rope_freqs.weight"] == ((16,), "F32") and s["blk.0.layer_output_scale.weight"] == ((1,), "F32")
    assert "output.weight" not in s  # tied
    assert m["gemma4.attention.sliding_window_pattern"] == [True] * 4 + [False] + [True] * 4 + [False]
    assert m["gemma4.feed_forward_length"] == [48] * 5 + [96] * 5
    assert (m["gemma4.attention.key_length"], m["gemma4.attention.key_length_swa"]) == (32, 16)
    assert m["gemma4.attention.shared_kv_layers"] == 5 and m["gemma4.embedding_length_per_layer_input"] == 8
    assert (m["gemma4.rope.dimension_count"], m["gemma4.rope.dimension_count_swa"]) == (32, 16)
    assert m["gemma4.rope.freq_base_swa"] == 10000.0 and m["gemma4.attention.head_count_kv"] == 1


def test_gemma4_moe_fuses_gate_and_up_and_drops_v_on_full_blocks() -> None:
    h = header_from_hf_config(GEMMA4_MOE)
    s, m = shapes(h), h.metadata
    assert s["blk.0.ffn_gate_up_exps.weight"] == ((88, 48, 8), "F16")
    assert s["blk.0.ffn_down_exps.weight"][0] == (24, 88, 8)
    assert s["blk.0.ffn_gate_inp.scale"] == ((88,), "F32") and s["blk.0.ffn_down_exps.scale"] == ((8,), "F32")
    assert s["blk.0.ffn_up.weight"][0] == (88, 56)  # the dense FFN stays (the shared expert)
    assert s["blk.0.attn_v.weight"][0] == (88, 32) and "blk.5.attn_v.weight" not in s  # V = K on full blocks
    assert s["blk.5.attn_k.weight"][0] == (88, 32)  # 1 global KV head of 32
    assert m["gemma4.attention.head_count_kv"] == [2, 2, 2, 2, 2, 1]
    assert m["gemma4.expert_used_count"] == 2 and m["gemma4.expert_feed_forward_length"] == 24


@pytest.mark.parametrize("shared", [9, 4])
def test_gemma4_shared_blocks_need_a_sliding_and_a_full_block_to_read(shared: int) -> None:
    # 9: one block left; 4: block 5 slides, so a shared full block would read a sliding cache
    # (llama.cpp asserts and aborts: llama-kv-cache.cpp map_layer_ids).
    with pytest.raises(CorruptModelError, match="num_kv_shared_layers"):
        header_from_hf_config({**GEMMA4_E2B, "num_kv_shared_layers": shared})


def test_glm4_moe_dense_first_shared_experts_and_draft_head() -> None:
    h = header_from_hf_config(GLM4_MOE)
    s, m = shapes(h), h.metadata
    assert "blk.0.ffn_up.weight" in s and "blk.0.ffn_up_exps.weight" not in s  # first_k_dense_replace
    assert s["blk.1.ffn_up_exps.weight"][0] == (96, 24, 8) and s["blk.1.ffn_up_shexp.weight"][0] == (96, 24)
    assert s["blk.1.exp_probs_b.bias"] == ((8,), "F32") and s["blk.1.attn_q.bias"][0] == (96,)
    assert "blk.1.post_attention_norm.weight" in s and "blk.1.ffn_norm.weight" not in s
    assert s["blk.3.nextn.eh_proj.weight"][0] == (192, 96) and s["blk.3.nextn.embed_tokens.weight"][0] == (
        96,
        500,
    )
    assert m["glm4moe.block_count"] == 4 and m["glm4moe.nextn_predict_layers"] == 1
    assert m["glm4moe.rope.dimension_count"] == 8 and m["glm4moe.expert_gating_func"] == 2
    assert m["glm4moe.leading_dense_block_count"] == 1 and m["glm4moe.expert_shared_count"] == 1


def test_glm47_flash_is_deepseek2_with_latent_attention() -> None:
    h = header_from_hf_config(GLM4_MOE_LITE)
    s, m = shapes(h), h.metadata
    assert h.architecture == "deepseek2"
    assert s["blk.0.attn_kv_a_mqa.weight"][0] == (96, 40) and s["blk.0.attn_q_b.weight"][0] == (48, 144)
    assert s["blk.0.attn_k_b.weight"][0] == (16, 32, 6) and s["blk.0.attn_v_b.weight"][0] == (32, 16, 6)
    assert "blk.3.attn_norm.weight" not in s  # the draft head is counted, not sized
    assert m["deepseek2.block_count"] == 4 and m["deepseek2.nextn_predict_layers"] == 1
    assert (m["deepseek2.attention.key_length"], m["deepseek2.attention.value_length"]) == (40, 32)
    assert (m["deepseek2.attention.key_length_mla"], m["deepseek2.attention.value_length_mla"]) == (24, 16)
    assert m["deepseek2.attention.head_count_kv"] == 1 and "deepseek2.expert_gating_func" not in m


def test_lfm2_moe_routes_after_the_dense_blocks() -> None:
    h = header_from_hf_config(LFM2_MOE)
    s, m = shapes(h), h.metadata
    assert "blk.1.ffn_up.weight" in s and "blk.2.ffn_up.weight" not in s
    assert s["blk.2.ffn_up_exps.weight"][0] == (96, 24, 8) and s["blk.2.exp_probs_b.bias"] == ((8,), "F32")
    assert m["lfm2moe.attention.head_count_kv"] == [0, 0, 2, 0, 2, 0]
    assert m["lfm2moe.feed_forward_length"] == 72  # no auto-adjusted width for the MoE model
    assert m["lfm2moe.leading_dense_block_count"] == 2 and m["lfm2moe.expert_gating_func"] == 2


def test_mistral3_is_its_own_arch_with_llama_tensors() -> None:
    assert gguf_arch(MISTRAL3) == "mistral3"
    assert gguf_arch(MISTRAL3["text_config"]) == "llama"  # the text model alone converts as before
    h = header_from_hf_config(MISTRAL3)
    assert (
        h.metadata["mistral3.rope.dimension_count"] == 16
        and h.metadata["mistral3.attention.key_length"] == 16
    )
    assert {t.name for t in h.tensors} == {
        t.name for t in header_from_hf_config(MISTRAL3["text_config"]).tensors
    }


@pytest.mark.parametrize(
    ("hf_name", "arch", "expected"),
    [
        ("model.layers.3.self_attn.sinks", "gpt_oss", "blk.3.attn_sinks.weight"),
        ("model.layers.3.mlp.experts.gate_up_proj_blocks", "gpt-oss", "blk.3.ffn_gate_exps.weight"),
        ("model.layers.3.mlp.router.bias", "gpt-oss", "blk.3.ffn_gate_inp.bias"),
        ("model.language_model.layers.2.experts.gate_up_proj", "gemma4", "blk.2.ffn_gate_up_exps.weight"),
        ("model.language_model.embed_tokens_per_layer.weight", "gemma4", "per_layer_token_embd.weight"),
        ("model.layers.2.router.per_expert_scale", "gemma4_text", "blk.2.ffn_down_exps.scale"),
        ("model.layers.46.eh_proj.weight", "glm4_moe", "blk.46.nextn.eh_proj.weight"),
        ("model.layers.5.mlp.gate.e_score_correction_bias", "glm4moe", "blk.5.exp_probs_b.bias"),
        ("model.layers.5.self_attn.kv_b_proj.weight", "glm4_moe_lite", "blk.5.attn_k_b.weight"),
        ("model.layers.5.feed_forward.experts.3.w2.weight", "lfm2_moe", "blk.5.ffn_down_exps.weight"),
        ("language_model.model.layers.1.self_attn.o_proj.weight", "mistral3", "blk.1.attn_output.weight"),
    ],
)
def test_gguf_tensor_name_families(hf_name: str, arch: str, expected: str) -> None:
    assert gguf_tensor_name(hf_name, arch) == expected


@pytest.mark.parametrize(
    ("config", "key", "value"),
    [
        (GEMMA4_E2B, "global_head_dim", 10**9),
        (GEMMA4_E2B, "num_kv_shared_layers", -1),
        (GEMMA4_E2B, "use_double_wide_mlp", "yes"),
        (GLM4_MOE, "n_shared_experts", 1.5),
        (GLM4_MOE, "routed_scaling_factor", float("nan")),
        (GLM4_MOE_LITE, "kv_lora_rank", 0),
    ],
)
def test_unusable_family_keys_are_refused_by_name(config: dict[str, Any], key: str, value: object) -> None:
    with pytest.raises(CorruptModelError, match=key):
        header_from_hf_config({**config, key: value})

"""config.json → GGUF header, checked against real converted GGUFs and hand-computed shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.errors import UnsupportedArchitectureError
from app.core.model.gguf_header import GGUFHeader, read_gguf_file
from app.core.model.hf_arch import header_from_hf_config, supported_model_types
from app.core.model.hf_names import gguf_tensor_name
from app.core.model.info import model_info_from_header

# HuggingFaceTB/SmolLM2-135M-Instruct config.json (the structural keys, real values).
SMOLLM2_135M: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rope_theta": 100000,
    "rope_scaling": None,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
}
# google/gemma-3-270m-it config.json (structural keys, real values).
GEMMA3_270M: dict[str, Any] = {
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "hidden_size": 640,
    "intermediate_size": 2048,
    "num_hidden_layers": 18,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 262144,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rope_local_base_freq": 10000.0,
    "rope_scaling": None,
    "sliding_window": 512,
    "rms_norm_eps": 1e-06,
    "query_pre_attn_scalar": 256,
}
# Qwen/Qwen3-30B-A3B config.json (structural keys).
QWEN3_30B_A3B: dict[str, Any] = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-06,
    "tie_word_embeddings": False,
}
# microsoft/Phi-3-mini-4k-instruct config.json (structural keys).
PHI3_MINI: dict[str, Any] = {
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32064,
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rms_norm_eps": 1e-05,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
}


def shapes(header: GGUFHeader) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in header.tensors}


def types(header: GGUFHeader) -> dict[str, str]:
    return {t.name: t.type_name for t in header.tensors}


@pytest.mark.parametrize(
    ("config", "fixture"),
    [(SMOLLM2_135M, "smollm2_path"), (GEMMA3_270M, "gemma3_path")],
    ids=["smollm2-135m", "gemma3-270m"],
)
def test_tensor_table_matches_the_real_gguf(
    config: dict[str, Any], fixture: str, request: pytest.FixtureRequest
) -> None:
    real = read_gguf_file(request.getfixturevalue(fixture))
    ours = header_from_hf_config(config)
    assert shapes(ours) == shapes(real)  # same names, same ggml-order shapes (types differ: Q4 vs F16)


@pytest.mark.parametrize(
    ("config", "fixture"),
    [(SMOLLM2_135M, "smollm2_path"), (GEMMA3_270M, "gemma3_path")],
    ids=["smollm2-135m", "gemma3-270m"],
)
def test_key_metadata_matches_the_real_gguf(
    config: dict[str, Any], fixture: str, request: pytest.FixtureRequest
) -> None:
    real = read_gguf_file(request.getfixturevalue(fixture)).metadata
    ours = header_from_hf_config(config).metadata
    arch = ours["general.architecture"]
    assert arch == real["general.architecture"]
    shared = [k for k in ours if k in real and k.startswith(f"{arch}.")]
    assert len(shared) >= 10
    for key in shared:
        assert ours[key] == pytest.approx(real[key], rel=1e-6), key


def test_model_info_from_config_equals_model_info_from_gguf(gemma3_path: Path) -> None:
    """What the estimator sees must not depend on whether it was given the config or the file."""
    a = model_info_from_header(header_from_hf_config(GEMMA3_270M), source="cfg", source_kind="hf_dir")
    b = model_info_from_header(read_gguf_file(gemma3_path), source="gguf", source_kind="gguf")
    for field in ("architecture", "n_layer", "n_embd", "n_head", "n_head_kv", "head_dim_k", "head_dim_v",
                  "n_ff", "n_vocab", "n_ctx_train", "sliding_window", "swa_layers", "tied_embeddings"):  # fmt: skip
        assert getattr(a, field) == getattr(b, field), field
    assert a.n_params == b.n_params


def test_types_follow_the_converter() -> None:
    h = header_from_hf_config(GEMMA3_270M, dtype="BF16")
    t = types(h)
    assert h.metadata["general.file_type"] == 32  # LLAMA_FTYPE_MOSTLY_BF16
    assert t["token_embd.weight"] == t["blk.0.attn_q.weight"] == "BF16"
    assert t["blk.0.attn_q_norm.weight"] == t["output_norm.weight"] == "F32"
    assert header_from_hf_config(SMOLLM2_135M).metadata["general.file_type"] == 1  # F16


def test_q8_0_falls_back_to_f16_on_rows_that_are_not_whole_blocks() -> None:
    tiny = {
        **SMOLLM2_135M,
        "hidden_size": 48,
        "intermediate_size": 64,
        "num_attention_heads": 3,
        "num_key_value_heads": 1,
    }
    t = types(header_from_hf_config(tiny, dtype="Q8_0"))
    assert t["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 64 = two Q8_0 blocks
    assert t["blk.0.attn_q.weight"] == "F16"  # rows of 48


def test_moe_experts_are_stacked_3d_tensors() -> None:
    h = header_from_hf_config(QWEN3_30B_A3B)
    s, t = shapes(h), types(h)
    assert h.architecture == "qwen3moe"
    assert s["blk.0.ffn_gate_exps.weight"] == (2048, 768, 128)
    assert s["blk.0.ffn_up_exps.weight"] == (2048, 768, 128)
    assert s["blk.0.ffn_down_exps.weight"] == (768, 2048, 128)
    assert s["blk.0.ffn_gate_inp.weight"] == (2048, 128)
    assert t["blk.0.ffn_gate_inp.weight"] == "F32"  # routers stay F32
    assert s["blk.47.attn_q.weight"] == (2048, 4096)  # 32 heads x 128, wider than hidden
    assert s["blk.47.attn_k.weight"] == (2048, 512)
    assert s["blk.47.attn_output.weight"] == (4096, 2048)
    assert s["blk.0.attn_k_norm.weight"] == (128,)
    assert "blk.0.ffn_gate.weight" not in s
    assert s["output.weight"] == (2048, 151936)
    meta = h.metadata
    assert (meta["qwen3moe.expert_count"], meta["qwen3moe.expert_used_count"]) == (128, 8)
    assert meta["qwen3moe.expert_feed_forward_length"] == 768
    assert meta["qwen3moe.attention.key_length"] == 128
    assert len(h.tensors) == 3 + 48 * 12  # 4 attention + 2 qk-norm + 2 norms + router + 3 experts


def test_moe_dense_layers_from_mlp_only_layers() -> None:
    s = shapes(header_from_hf_config({**QWEN3_30B_A3B, "mlp_only_layers": [0]}))
    assert s["blk.0.ffn_gate.weight"] == (2048, 6144)
    assert "blk.0.ffn_gate_exps.weight" not in s
    assert "blk.1.ffn_gate_exps.weight" in s


def test_phi3_fuses_qkv_and_gate_up() -> None:
    h = header_from_hf_config(PHI3_MINI)
    s = shapes(h)
    assert s["blk.0.attn_qkv.weight"] == (3072, 3 * 3072)
    assert s["blk.0.ffn_up.weight"] == (3072, 2 * 8192)
    assert s["blk.0.ffn_down.weight"] == (8192, 3072)
    assert s["blk.0.attn_output.weight"] == (3072, 3072)
    assert s["output.weight"] == (3072, 32064)
    assert not {"blk.0.attn_q.weight", "blk.0.ffn_gate.weight", "rope_factors_long.weight"} & set(s)
    assert len(h.tensors) == 3 + 32 * 6
    meta = h.metadata
    assert meta["phi3.rope.dimension_count"] == 96
    assert meta["phi3.attention.sliding_window"] == 2047
    assert meta["phi3.rope.scaling.original_context_length"] == 4096


def test_phi3_longrope_factors_and_gqa() -> None:
    cfg = {**PHI3_MINI, "num_key_value_heads": 8, "max_position_embeddings": 131072,
           "rope_scaling": {"type": "longrope", "long_factor": [1.0] * 48, "short_factor": [1.0] * 48}}  # fmt: skip
    s = shapes(header_from_hf_config(cfg))
    assert s["blk.0.attn_qkv.weight"] == (3072, 3072 + 2 * 8 * 96)
    assert s["rope_factors_long.weight"] == s["rope_factors_short.weight"] == (48,)


def test_llama3_rope_freqs_tied_embeddings_and_head_dim() -> None:
    cfg = {**SMOLLM2_135M, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
           "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"}}  # fmt: skip
    h = header_from_hf_config(cfg)
    s = shapes(h)
    assert s["rope_freqs.weight"] == (32,)  # head_dim / 2, generated by the converter
    assert "output.weight" not in s  # tied
    assert h.metadata["llama.attention.key_length"] == 64
    assert h.metadata["llama.rope.dimension_count"] == 64
    assert sum(t.n_elements for t in h.tensors) == 1_235_814_400 + 32  # Llama-3.2-1B + rope_freqs


def test_mistral_is_llama_and_head_dim_may_differ_from_hidden_over_heads() -> None:
    nemo = {"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 14336, "num_hidden_layers": 40,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072,
            "max_position_embeddings": 1024000, "rope_theta": 1000000.0, "sliding_window": None,
            "tie_word_embeddings": False}  # fmt: skip
    h = header_from_hf_config(nemo)
    s = shapes(h)
    assert h.architecture == "llama"
    assert s["blk.0.attn_q.weight"] == (5120, 4096)
    assert s["blk.0.attn_output.weight"] == (4096, 5120)
    assert h.metadata["llama.attention.key_length"] == 128
    assert "llama.attention.sliding_window" not in h.metadata


def test_qwen2_has_qkv_biases_in_f32() -> None:
    cfg = {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
           "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
           "max_position_embeddings": 32768, "tie_word_embeddings": True}  # fmt: skip
    h = header_from_hf_config(cfg)
    s, t = shapes(h), types(h)
    assert s["blk.0.attn_k.bias"] == (128,) and t["blk.0.attn_k.bias"] == "F32"
    assert "blk.0.attn_output.bias" not in s
    assert sum(x.n_elements for x in h.tensors) == pytest.approx(0.494e9, rel=0.01)


def test_multimodal_gemma3_uses_its_text_config_and_transformers_defaults() -> None:
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
                           "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                           "sliding_window": 1024},
           "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152}}  # fmt: skip
    h = header_from_hf_config(cfg)
    s, meta = shapes(h), h.metadata
    assert h.architecture == "gemma3"
    assert s["token_embd.weight"] == (2560, 262208)  # Gemma3TextConfig's default vocabulary
    assert s["blk.0.attn_q.weight"] == (2560, 8 * 256)
    assert s["blk.0.attn_k.weight"] == (2560, 4 * 256)
    assert not any(name.startswith(("v.", "mm.")) for name in s)  # the vision tower is a separate mmproj
    assert meta["gemma3.rope.scaling.type"] == "linear" and meta["gemma3.rope.scaling.factor"] == 8.0
    assert meta["gemma3.attention.sliding_window"] == 1024
    assert meta["gemma3.context_length"] == 131072


def test_gemma2_norms_and_softcapping() -> None:
    cfg = {"model_type": "gemma2", "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 256000,
           "tie_word_embeddings": False}  # fmt: skip
    # tie_word_embeddings is ignored: the converter drops Gemma 2's lm_head, so the file is always tied.
    h = header_from_hf_config(cfg)
    s = shapes(h)
    assert {"blk.0.post_attention_norm.weight", "blk.0.ffn_norm.weight", "blk.0.post_ffw_norm.weight"} <= set(
        s
    )
    assert "output.weight" not in s and "blk.0.attn_q_norm.weight" not in s
    assert h.metadata["gemma2.attn_logit_softcapping"] == 50.0
    assert h.metadata["gemma2.attention.sliding_window"] == 4096
    assert sum(t.n_elements for t in h.tensors) == pytest.approx(2.614e9, rel=0.01)


def test_unknown_model_type_names_it_and_the_supported_list() -> None:
    with pytest.raises(UnsupportedArchitectureError) as err:
        header_from_hf_config({"model_type": "mamba2", "hidden_size": 64})
    message = str(err.value)
    assert "'mamba2'" in message
    for model_type in ("llama", "qwen3_moe", "gemma3", "phi3"):
        assert model_type in message
    assert err.value.hint
    assert set(supported_model_types()) >= {"llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "gemma2",
                                             "gemma3", "gemma3_text", "phi3"}  # fmt: skip


def test_missing_dimension_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="hidden_size"):
        header_from_hf_config({k: v for k, v in SMOLLM2_135M.items() if k != "hidden_size"})
    with pytest.raises(ValueError, match="dtype"):
        header_from_hf_config(SMOLLM2_135M, dtype="Q4_K_M")


@pytest.mark.parametrize(
    ("hf_name", "arch", "expected"),
    [
        ("model.embed_tokens.weight", "llama", "token_embd.weight"),
        ("lm_head.weight", "mistral", "output.weight"),
        ("model.layers.7.self_attn.q_proj.weight", "qwen2", "blk.7.attn_q.weight"),
        ("model.layers.7.self_attn.q_proj.bias", "qwen2", "blk.7.attn_q.bias"),
        ("model.layers.3.post_attention_layernorm.weight", "llama", "blk.3.ffn_norm.weight"),
        ("model.layers.3.post_attention_layernorm.weight", "gemma3", "blk.3.post_attention_norm.weight"),
        ("model.layers.3.pre_feedforward_layernorm.weight", "gemma3_text", "blk.3.ffn_norm.weight"),
        ("language_model.model.layers.0.self_attn.k_norm.weight", "gemma3", "blk.0.attn_k_norm.weight"),
        ("model.language_model.layers.0.mlp.down_proj.weight", "gemma3", "blk.0.ffn_down.weight"),
        ("model.layers.11.mlp.experts.93.up_proj.weight", "qwen3_moe", "blk.11.ffn_up_exps.weight"),
        ("model.layers.11.mlp.gate.weight", "qwen3moe", "blk.11.ffn_gate_inp.weight"),
        ("model.layers.2.self_attn.qkv_proj.weight", "phi3", "blk.2.attn_qkv.weight"),
        ("model.layers.2.mlp.gate_up_proj.weight", "phi3", "blk.2.ffn_up.weight"),
        ("vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "gemma3", None),
        ("model.layers.0.self_attn.rotary_emb.inv_freq", "llama", None),
    ],
)
def test_gguf_tensor_name(hf_name: str, arch: str, expected: str | None) -> None:
    assert gguf_tensor_name(hf_name, arch) == expected


def test_gguf_tensor_name_covers_every_checkpoint_tensor_of_the_table() -> None:
    """Every GGUF tensor except the generated ones has a checkpoint name that maps back to it."""
    from app.core.model.hf_arch import TABLES

    for arch, (glob, block) in TABLES.items():
        for spec in glob + block:
            if spec.hf is not None:
                hf = spec.hf.format(bid=5, xid=17)
                # Gemma 1 and 2 checkpoints may carry an lm_head; the converter drops it (always tied).
                expected = (
                    None
                    if (arch, hf) in {("gemma", "lm_head.weight"), ("gemma2", "lm_head.weight")}
                    else spec.gguf.format(bid=5)
                )
                assert gguf_tensor_name(hf, arch) == expected, (arch, hf)

"""Real config.json values of small hybrid models (recurrent + attention layers), for tests.

Every value is copied from the source named beside the config; keys the converter and llama.cpp
do not read (token ids, dtypes, initializer ranges, the vision tower) are left out.
"""

from __future__ import annotations

from typing import Any

# Qwen/Qwen3.5-0.8B — https://huggingface.co/Qwen/Qwen3.5-0.8B/resolve/main/config.json, as fetched
# verbatim in a public agent log (search index file id 54505217749): a Gated DeltaNet hybrid, 3 of
# every 4 layers linear attention, one multi-token-prediction block, multimodal (text_config).
QWEN35_08B: dict[str, Any] = {
    "architectures": ["Qwen3_5ForConditionalGeneration"],
    "model_type": "qwen3_5",
    "tie_word_embeddings": True,
    "text_config": {
        "attention_bias": False,
        "attn_output_gate": True,
        "full_attention_interval": 4,
        "head_dim": 256,
        "hidden_act": "silu",
        "hidden_size": 1024,
        "intermediate_size": 3584,
        "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"] * 6,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 128,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 16,
        "linear_value_head_dim": 128,
        "max_position_embeddings": 262144,
        "mlp_only_layers": [],
        "model_type": "qwen3_5_text",
        "mtp_num_hidden_layers": 1,
        "mtp_use_dedicated_embeddings": False,
        "num_attention_heads": 8,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": True,
        "vocab_size": 248320,
        "mamba_ssm_dtype": "float32",
        "rope_parameters": {
            "mrope_interleaved": True,
            "mrope_section": [11, 11, 10],
            "rope_type": "default",
            "rope_theta": 10000000,
            "partial_rotary_factor": 0.25,
        },
    },
}

_C, _A = "conv", "full_attention"
_LFM2_350M_LAYERS = [_C, _C, _A, _C, _C, _A, _C, _C, _A, _C, _A, _C, _A, _C, _A, _C]

# Qwen/Qwen3.5-35B-A3B — the defaults of transformers' Qwen3_5MoeTextConfig, which documents them as
# this checkpoint's (src/transformers/models/qwen3_5_moe/configuration_qwen3_5_moe.py,
# @auto_docstring(checkpoint="Qwen/Qwen3.5-35B-A3B")), with the draft head, context and rope of
# Qwen3.5-0.8B's config.json above (the same values in a public test fixture of the 35B-A3B's
# text_config, search index file id 57973206963).
QWEN35_35B_A3B: dict[str, Any] = {
    "architectures": ["Qwen3_5MoeForConditionalGeneration"],
    "model_type": "qwen3_5_moe",
    "text_config": {
        "model_type": "qwen3_5_moe_text",
        "hidden_size": 2048,
        "num_hidden_layers": 40,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "linear_conv_kernel_dim": 4,
        "linear_key_head_dim": 128,
        "linear_value_head_dim": 128,
        "linear_num_key_heads": 16,
        "linear_num_value_heads": 32,
        "moe_intermediate_size": 512,
        "shared_expert_intermediate_size": 512,
        "num_experts": 256,
        "num_experts_per_tok": 8,
        "full_attention_interval": 4,
        "max_position_embeddings": 262144,
        "mtp_num_hidden_layers": 1,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "vocab_size": 248320,
        "rope_parameters": QWEN35_08B["text_config"]["rope_parameters"],
    },
}

# LiquidAI/LFM2-350M — the model's config.json as mirrored at
# https://huggingface.co/Thorge-AI/lfm2-web-runtime-weights/blob/main/Models/350M/config.json (the
# same values as LiquidAI/LFM2-700M's own config.json except the widths; its model card gives
# 354,483,968 parameters, which this table reproduces): 10 short-convolution and 6 attention layers.
LFM2_350M: dict[str, Any] = {
    "architectures": ["Lfm2ForCausalLM"],
    "model_type": "lfm2",
    "block_auto_adjust_ff_dim": True,
    "block_dim": 1024,
    "block_ff_dim": 6656,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "block_norm_eps": 1e-05,
    "conv_L_cache": 3,
    "conv_bias": False,
    "conv_dim": 1024,
    "hidden_size": 1024,
    "intermediate_size": 6656,
    "layer_types": _LFM2_350M_LAYERS,
    "max_position_embeddings": 128000,
    "norm_eps": 1e-05,
    "num_attention_heads": 16,
    "num_heads": 16,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rope_theta": 1000000.0,
    "vocab_size": 65536,
}
LFM2_350M_PARAMS = 354_483_968  # https://huggingface.co/LiquidAI/LFM2-350M model card, "Parameters"

# LiquidAI/LFM2-700M — https://huggingface.co/LiquidAI/LFM2-700M/blob/refs%2Fpr%2F8/config.json: the
# older spelling, attention layers listed in full_attn_idxs instead of layer_types.
LFM2_700M: dict[str, Any] = {
    "architectures": ["Lfm2ForCausalLM"],
    "model_type": "lfm2",
    "block_auto_adjust_ff_dim": True,
    "block_dim": 1536,
    "block_ff_dim": 10240,
    "block_ffn_dim_multiplier": 1.0,
    "block_multiple_of": 256,
    "block_norm_eps": 1e-05,
    "conv_L_cache": 3,
    "conv_bias": False,
    "conv_dim": 1536,
    "full_attn_idxs": [2, 5, 8, 10, 12, 14],
    "hidden_size": 1536,
    "max_position_embeddings": 128000,
    "norm_eps": 1e-05,
    "num_attention_heads": 24,
    "num_heads": 24,
    "num_hidden_layers": 16,
    "num_key_value_heads": 8,
    "rope_theta": 1000000.0,
    "vocab_size": 65536,
}
LFM2_700M_PARAMS = 742_489_344  # https://huggingface.co/LiquidAI/LFM2-350M model card, LFM2-700M column

_M, _T = "mamba", "attention"
_GRANITE_350M_LAYERS = [_M] * 10 + [_T, _M, _M, _T, _M, _M, _M, _T] + [_M] * 9 + [_T] + [_M] * 4

# ibm-granite/granite-4.0-h-350m — its config.json as published in the copy at
# https://huggingface.co/Org-Exp/SSM-350m/blob/main/config.json (same values in a Rust test that
# mirrors the real checkpoint, search index file id 54665629904): Mamba-2 with 4 attention layers
# of 32, no positions in attention (NoPE), a dense shared MLP (no experts).
GRANITE_4_H_350M: dict[str, Any] = {
    "architectures": ["GraniteMoeHybridForCausalLM"],
    "model_type": "granitemoehybrid",
    "attention_bias": False,
    "attention_multiplier": 0.015625,
    "embedding_multiplier": 12,
    "hidden_act": "silu",
    "hidden_size": 768,
    "intermediate_size": 2048,
    "layer_types": _GRANITE_350M_LAYERS,
    "logits_scaling": 3,
    "mamba_chunk_size": 256,
    "mamba_conv_bias": True,
    "mamba_d_conv": 4,
    "mamba_d_head": 32,
    "mamba_d_state": 128,
    "mamba_expand": 2,
    "mamba_n_groups": 1,
    "mamba_n_heads": 48,
    "mamba_proj_bias": False,
    "max_position_embeddings": 32768,
    "num_attention_heads": 12,
    "num_experts_per_tok": 0,
    "num_hidden_layers": 32,
    "num_key_value_heads": 4,
    "num_local_experts": 0,
    "position_embedding_type": "nope",
    "residual_multiplier": 0.246,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000,
    "shared_intermediate_size": 2048,
    "tie_word_embeddings": True,
    "vocab_size": 100352,
}

HYBRIDS = {"qwen3.5-0.8b": QWEN35_08B, "lfm2-350m": LFM2_350M, "granite-4.0-h-350m": GRANITE_4_H_350M}

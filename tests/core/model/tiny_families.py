"""Tiny configs of the families added in issue 16, part 4 (gpt-oss, Gemma 4, GLM-4.5 MoE, GLM-4.7-Flash,
LFM2-MoE, Mistral 3): the shrunk checkpoints llama.cpp's vendored converter was run on (random
weights), every dimension a different number so that each one is identifiable in a shape."""

from __future__ import annotations

from typing import Any

GPT_OSS: dict[str, Any] = {
    "model_type": "gpt_oss", "hidden_size": 96, "intermediate_size": 64, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 8,
    "num_experts_per_tok": 2, "vocab_size": 500, "max_position_embeddings": 131072, "sliding_window": 128,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                     "original_max_position_embeddings": 4096},
    "quantization_config": {"quant_method": "mxfp4"},
}  # fmt: skip
GEMMA4_E2B: dict[str, Any] = {
    "model_type": "gemma4_text", "hidden_size": 64, "num_hidden_layers": 10, "intermediate_size": 48,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "global_head_dim": 32,
    "hidden_size_per_layer_input": 8, "vocab_size_per_layer_input": 500, "num_kv_shared_layers": 5,
    "use_double_wide_mlp": True, "attention_k_eq_v": False, "vocab_size": 500, "sliding_window": 512,
    "final_logit_softcapping": 30.0, "max_position_embeddings": 131072,
    "rope_parameters": {"full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1e6, "rope_type": "proportional"},
                        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
    "layer_types": (["sliding_attention"] * 4 + ["full_attention"]) * 2,
}  # fmt: skip
GEMMA4_MOE: dict[str, Any] = {
    **GEMMA4_E2B, "hidden_size": 88, "num_hidden_layers": 6, "intermediate_size": 56, "num_key_value_heads": 2,
    "num_global_key_value_heads": 1, "attention_k_eq_v": True, "hidden_size_per_layer_input": 0,
    "num_kv_shared_layers": 0, "use_double_wide_mlp": False, "enable_moe_block": True, "num_experts": 8,
    "top_k_experts": 2, "moe_intermediate_size": 24, "sliding_window": 1024,
    "layer_types": ["sliding_attention"] * 5 + ["full_attention"],
}  # fmt: skip
GLM4_MOE: dict[str, Any] = {
    "model_type": "glm4_moe", "hidden_size": 96, "intermediate_size": 72, "num_hidden_layers": 3,
    "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16, "attention_bias": True,
    "partial_rotary_factor": 0.5, "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
    "n_shared_experts": 1, "first_k_dense_replace": 1, "num_nextn_predict_layers": 1, "vocab_size": 500,
    "max_position_embeddings": 131072, "routed_scaling_factor": 1.0, "norm_topk_prob": True,
}  # fmt: skip
GLM4_MOE_LITE: dict[str, Any] = {
    "model_type": "glm4_moe_lite", "hidden_size": 96, "intermediate_size": 72, "num_hidden_layers": 3,
    "num_attention_heads": 6, "num_key_value_heads": 6, "q_lora_rank": 48, "kv_lora_rank": 32,
    "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8,
    "num_experts_per_tok": 2, "moe_intermediate_size": 24, "n_shared_experts": 1, "first_k_dense_replace": 1,
    "num_nextn_predict_layers": 1, "routed_scaling_factor": 1.8, "vocab_size": 500,
    "max_position_embeddings": 202752,
}  # fmt: skip
LFM2_MOE: dict[str, Any] = {
    "model_type": "lfm2_moe", "hidden_size": 96, "intermediate_size": 72, "moe_intermediate_size": 24,
    "num_hidden_layers": 6, "num_attention_heads": 6, "num_key_value_heads": 2, "num_dense_layers": 2,
    "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 500, "max_position_embeddings": 128000,
    "layer_types": ["conv", "conv", "full_attention", "conv", "full_attention", "conv"],
}  # fmt: skip
MISTRAL3: dict[str, Any] = {
    "model_type": "mistral3", "architectures": ["Mistral3ForConditionalGeneration"],
    "text_config": {"model_type": "mistral", "hidden_size": 96, "intermediate_size": 72, "num_hidden_layers": 2,
                    "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 500,
                    "max_position_embeddings": 131072, "rope_theta": 1e9, "rms_norm_eps": 1e-5},
}  # fmt: skip

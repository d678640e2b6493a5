"""The values of a ``config.json``, checked before they shape a model.

A checkpoint's config is written by strangers: a layer count of 10¹², NaN heads, a string where
``rope_scaling`` belongs or a list where ``text_config`` does would otherwise surface as a
MemoryError, a ZeroDivisionError or an AttributeError deep inside :mod:`app.core.model.hf_arch`.
Every key that module reads is checked here for its type and for bounds that llama.cpp itself
enforces or that no released model comes near; each failure is one :class:`CorruptModelError`
naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from app.core.errors import CorruptModelError, UnsupportedArchitectureError
from app.core.model.sanity import (
    MAX_CONV_KERNEL,
    MAX_CTX,
    MAX_EXPERTS,
    MAX_FF,
    MAX_HEAD_DIM,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_SSM_EXPAND,
    MAX_SSM_STATE,
    MAX_VOCAB,
    MAX_WIDTH,
)

# The bounds are the ones a GGUF's header is held to (llama.cpp's own limits, else far above every
# released model; each names its source in app.core.model.sanity), so a config and the GGUF it
# converts to are refused alike.
CONFIG_HINT = "Download the checkpoint again, or open a GGUF build of the model instead."

# Whole-number keys → (least, most). A key that is absent or null is left to the caller's default.
WHOLE_KEYS: dict[str, tuple[int, int]] = {
    "num_hidden_layers": (1, MAX_LAYERS),
    "hidden_size": (1, MAX_WIDTH),
    "intermediate_size": (0, MAX_FF),  # 0: no dense FFN (checked against the layers later)
    "moe_intermediate_size": (0, MAX_FF),
    "head_dim": (1, MAX_HEAD_DIM),
    "num_attention_heads": (1, MAX_HEADS),
    "num_key_value_heads": (1, MAX_HEADS),
    "vocab_size": (1, MAX_VOCAB),
    "num_experts": (0, MAX_EXPERTS),
    "num_local_experts": (0, MAX_EXPERTS),
    "num_experts_per_tok": (0, MAX_EXPERTS),
    "decoder_sparse_step": (1, MAX_LAYERS),
    "sliding_window": (0, MAX_CTX),
    "sliding_window_pattern": (0, MAX_LAYERS),
    "original_max_position_embeddings": (1, MAX_CTX),
    # hybrids (app.core.model.hf_hybrid): Qwen3.5's Gated DeltaNet, LFM2, Granite 4.0-H's Mamba-2
    "linear_conv_kernel_dim": (1, MAX_CONV_KERNEL),
    "linear_key_head_dim": (1, MAX_SSM_STATE),
    "linear_value_head_dim": (1, MAX_SSM_STATE),
    "linear_num_key_heads": (1, MAX_HEADS),
    "linear_num_value_heads": (1, MAX_HEADS),
    "full_attention_interval": (1, MAX_LAYERS),
    "mtp_num_hidden_layers": (0, MAX_LAYERS),
    "conv_L_cache": (1, MAX_CONV_KERNEL),
    "block_ff_dim": (0, MAX_FF),
    "block_multiple_of": (1, MAX_FF),
    "shared_intermediate_size": (0, MAX_FF),
    "shared_expert_intermediate_size": (0, MAX_FF),
    "mamba_n_heads": (1, MAX_HEADS),
    "mamba_n_groups": (1, MAX_HEADS),
    "mamba_d_state": (1, MAX_SSM_STATE),
    "mamba_d_conv": (1, MAX_CONV_KERNEL),
    "mamba_expand": (1, MAX_SSM_EXPAND),
    # families with modules of their own (hf_gpt_oss, hf_gemma4, hf_glm, LFM2-MoE in hf_hybrid)
    "expert_intermediate_size": (0, MAX_FF),
    "n_routed_experts": (0, MAX_EXPERTS),
    "n_shared_experts": (0, MAX_EXPERTS),
    "top_k_experts": (0, MAX_EXPERTS),
    "num_experts_per_token": (0, MAX_EXPERTS),
    "first_k_dense_replace": (0, MAX_LAYERS),
    "num_dense_layers": (0, MAX_LAYERS),
    "num_nextn_predict_layers": (0, MAX_LAYERS),
    "n_group": (0, MAX_EXPERTS),
    "topk_group": (0, MAX_EXPERTS),
    "global_head_dim": (1, MAX_HEAD_DIM),
    "num_global_key_value_heads": (1, MAX_HEADS),
    "num_kv_shared_layers": (0, MAX_LAYERS),
    "hidden_size_per_layer_input": (0, MAX_WIDTH),
    "vocab_size_per_layer_input": (0, MAX_VOCAB),
    "q_lora_rank": (1, MAX_HEAD_DIM),
    "kv_lora_rank": (1, MAX_HEAD_DIM),
    "qk_nope_head_dim": (1, MAX_HEAD_DIM),
    "qk_rope_head_dim": (1, MAX_HEAD_DIM),
    "v_head_dim": (1, MAX_HEAD_DIM),
}
# The context length is the first of these that is set; only that one is read (and checked):
# a config may carry e.g. a tokenizer's "model_max_length" of 1e30 that nothing uses.
CONTEXT_KEYS = ("max_position_embeddings", "n_ctx", "n_positions", "max_length",
                "max_sequence_length", "model_max_length")  # fmt: skip
# Real-number keys → (least, most, whether the least itself is allowed). NaN and ±inf never are.
REAL_KEYS: dict[str, tuple[float, float, bool]] = {
    "rope_theta": (0.0, math.inf, False),
    "rope_local_base_freq": (0.0, math.inf, False),
    "rms_norm_eps": (0.0, 1.0, False),
    "partial_rotary_factor": (0.0, 1.0, False),
    "attn_logit_softcapping": (0.0, math.inf, False),
    "final_logit_softcapping": (0.0, math.inf, False),
    "norm_eps": (0.0, 1.0, False),
    "block_ffn_dim_multiplier": (0.0, math.inf, False),
    "attention_multiplier": (0.0, math.inf, False),
    "embedding_multiplier": (0.0, math.inf, False),
    "residual_multiplier": (0.0, math.inf, False),
    "logits_scaling": (0.0, math.inf, False),
    "routed_scaling_factor": (0.0, math.inf, False),
}
FLAG_KEYS = ("tie_word_embeddings", "attention_bias", "block_auto_adjust_ff_dim", "use_double_wide_mlp",
             "attention_k_eq_v", "enable_moe_block", "use_qk_norm", "norm_topk_prob")  # fmt: skip
SECTION_KEYS = ("rope_scaling", "rope_parameters")
# Inside a rope section (``rope_scaling``, ``rope_parameters`` or its per-attention-type parts).
ROPE_WHOLE = {"original_max_position_embeddings": (1, MAX_CTX)}
ROPE_REAL = {"factor": (0.0, math.inf, False), "rope_theta": (0.0, math.inf, False),
             "partial_rotary_factor": (0.0, 1.0, False)}  # fmt: skip
ROPE_LISTS = ("long_factor", "short_factor")
ROPE_STRINGS = ("rope_type", "type")
ROPE_PARTS = ("full_attention", "sliding_attention")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def bad(key: str, value: object, why: str) -> CorruptModelError:
    """The one error for a config value that cannot be used."""
    return CorruptModelError(
        f"config.json has an unusable {key!r}: {_shown(value)} ({why}).", hint=CONFIG_HINT
    )


def missing(key: str, value: object = None) -> UnsupportedArchitectureError:
    """A key the model's shape needs that the config leaves out."""
    return UnsupportedArchitectureError(
        f"config.json lacks a usable {key!r} (found {_shown(value)}), so the model's shape is unknown."
    )


def whole(key: str, value: object, least: int, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(key, value, "not a whole number")
    if not least <= value <= most:
        raise bad(key, value, f"must be between {least:,} and {most:,}")
    return value


def real(key: str, value: object, least: float, most: float, least_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(key, value, "not a number")
    x = float(value)
    if not math.isfinite(x):
        raise bad(key, value, "not a finite number")
    if x > most or x < least or (x == least and not least_ok):
        raise bad(key, value, f"must be {'at least' if least_ok else 'above'} {least:g}"
                              + (f" and at most {most:g}" if math.isfinite(most) else ""))  # fmt: skip
    return x


def section(key: str, value: object) -> dict[str, Any] | None:
    """A nested object (``text_config``, ``rope_scaling``): a JSON object or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad(key, value, "not a JSON object")
    return value


def _check_rope(key: str, rope: dict[str, Any], *, depth: int = 0) -> None:
    for name, (least, most) in ROPE_WHOLE.items():
        if rope.get(name) is not None:
            whole(f"{key}.{name}", rope[name], least, most)
    for name, (lo, hi, lo_ok) in ROPE_REAL.items():
        if rope.get(name) is not None:
            real(f"{key}.{name}", rope[name], lo, hi, lo_ok)
    for name in ROPE_LISTS:
        if rope.get(name) is not None and not isinstance(rope[name], list):
            raise bad(f"{key}.{name}", rope[name], "not a list")
    for name in ROPE_STRINGS:
        if rope.get(name) is not None and not isinstance(rope[name], str):
            raise bad(f"{key}.{name}", rope[name], "not a string")
    if depth == 0:
        for name in ROPE_PARTS:
            part = section(f"{key}.{name}", rope.get(name))
            if part is not None:
                _check_rope(f"{key}.{name}", part, depth=1)


def check_config(cfg: dict[str, Any]) -> None:
    """Type and range of every key :mod:`app.core.model.hf_arch` reads from the (merged) config."""
    for key, (least, most) in WHOLE_KEYS.items():
        if cfg.get(key) is not None:
            whole(key, cfg[key], least, most)
    ctx_key = next((k for k in CONTEXT_KEYS if cfg.get(k)), None)
    if ctx_key is not None:
        whole(ctx_key, cfg[ctx_key], 1, MAX_CTX)
    for key, (lo, hi, lo_ok) in REAL_KEYS.items():
        if cfg.get(key) is not None:
            real(key, cfg[key], lo, hi, lo_ok)
    for key in FLAG_KEYS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise bad(key, cfg[key], "not true or false")
    for key in SECTION_KEYS:
        rope = section(key, cfg.get(key))
        if rope is not None:
            _check_rope(key, rope)
    only = cfg.get("mlp_only_layers")
    if only is not None:
        if not isinstance(only, list) or len(only) > MAX_LAYERS:
            raise bad("mlp_only_layers", only, f"not a list of at most {MAX_LAYERS} layer numbers")
        for i in only:
            whole("mlp_only_layers", i, 0, MAX_LAYERS - 1)

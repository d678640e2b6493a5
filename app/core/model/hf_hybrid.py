"""The hybrid families of :mod:`app.core.model.hf_arch`: models whose blocks are not all attention.

Some blocks keep a fixed recurrent state per sequence instead of a KV cache — a Gated DeltaNet
(Qwen3.5, dense and MoE), a short convolution (LFM2), a Mamba-2 mixer (Granite 4.0-H). This module
says which block is which, sizes their extra dimensions and writes the metadata keys llama.cpp reads
them from, mirroring the vendored converter (``conversion/qwen.py`` Qwen3NextModel, Qwen3_5TextModel
and Qwen3_5MoeTextModel, ``conversion/lfm2.py`` LFM2Model, ``conversion/granite.py``
GraniteHybridModel) and llama.cpp's ``load_arch_hparams`` (``src/models/{qwen35,qwen35moe,lfm2,granite-hybrid}.cpp``).
"""

from __future__ import annotations

from typing import Any

from app.core.model.hf_config import bad, missing
from app.core.model.hf_family import Family
from app.core.model.sanity import MAX_LAYERS

# HF model_type → GGUF architecture (the converter's @ModelBase.register classes above).
HYBRID_MODEL_TYPES: dict[str, str] = {
    "qwen3_5": "qwen35",  # Qwen3_5ForConditionalGeneration: the text model sits in text_config
    "qwen3_5_text": "qwen35",  # Qwen3_5ForCausalLM
    "qwen3_5_moe": "qwen35moe",
    "qwen3_5_moe_text": "qwen35moe",
    "lfm2": "lfm2",
    "lfm2_moe": "lfm2moe",  # Lfm2MoeForCausalLM (conversion/lfm2.py LFM2MoeModel)
    "granitemoehybrid": "granitehybrid",
}

# What transformers fills in when config.json leaves a key out. Source: transformers
# src/transformers/models/{qwen3_5,lfm2,lfm2_moe,granitemoehybrid}/configuration_*.py.
HYBRID_DEFAULTS: dict[str, dict[str, Any]] = {
    "qwen3_5_text": {"vocab_size": 248320, "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 256,
                     "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
                     "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                     "linear_num_key_heads": 16, "linear_num_value_heads": 32, "partial_rotary_factor": 0.25},
    "lfm2": {"vocab_size": 65536, "num_key_value_heads": 8, "max_position_embeddings": 128000, "norm_eps": 1e-5,
             "tie_word_embeddings": True, "conv_L_cache": 3, "block_multiple_of": 256,
             "block_ffn_dim_multiplier": 1.0, "block_auto_adjust_ff_dim": True, "rope_theta": 1e6},
    "lfm2_moe": {"vocab_size": 65536, "num_key_value_heads": 8, "max_position_embeddings": 128000, "norm_eps": 1e-5,
                 "tie_word_embeddings": True, "conv_L_cache": 3, "num_dense_layers": 2, "num_experts": 32,
                 "num_experts_per_tok": 4, "moe_intermediate_size": 1792, "rope_theta": 1e6},
    "granitemoehybrid": {"vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
                         "tie_word_embeddings": False, "rope_theta": 10000.0, "num_local_experts": 8,
                         "num_experts_per_tok": 2, "shared_intermediate_size": 1024, "mamba_n_heads": 128,
                         "mamba_n_groups": 1, "mamba_d_state": 256, "mamba_d_conv": 4, "mamba_expand": 2},
}  # fmt: skip
HYBRID_DEFAULTS["qwen3_5_moe_text"] = {
    **HYBRID_DEFAULTS["qwen3_5_text"], "hidden_size": 2048, "num_hidden_layers": 40, "num_key_value_heads": 2,
    "num_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 512,
    "shared_expert_intermediate_size": 512,
}  # fmt: skip
HYBRID_DEFAULTS["qwen3_5"] = HYBRID_DEFAULTS["qwen3_5_text"]
HYBRID_DEFAULTS["qwen3_5_moe"] = HYBRID_DEFAULTS["qwen3_5_moe_text"]
_QWEN35 = ("qwen35", "qwen35moe")  # the same blocks; the MoE one with routed and shared experts
_LFM2 = ("lfm2", "lfm2moe")  # the same blocks; the MoE one with routed experts after the first few
# LFM2MoeModel.set_gguf_parameters: a sigmoid router (gguf.ExpertGatingFuncType.SIGMOID).
LFM2_MOE_GATING = 2

# Qwen3.5 always uses interleaved M-RoPE; conversion/qwen.py _Qwen35MRopeMixin writes these sections
# when rope_parameters has none.
QWEN35_MROPE_SECTIONS = [11, 11, 10, 0]
QWEN35_FULL_ATTENTION_INTERVAL = 4  # Qwen3_5TextConfig and llama.cpp qwen35.cpp both default to it
QWEN35_PARTIAL_ROTARY = 0.25  # conversion/qwen.py Qwen3NextModel: rope_dimension_count's default factor
# Granite 4.0-H attends without positions: the converter writes an arbitrary long context
# (conversion/mamba.py Mamba2Model, conversion/granite.py GraniteHybridModel: 2**20).
GRANITE_HYBRID_CONTEXT = 2**20
_GRANITE_KINDS = {"mamba": "recr", "attention": "attn"}
_QWEN35_KINDS = {"linear_attention": "recr", "full_attention": "attn"}
_LFM2_KINDS = {"conv": "recr", "full_attention": "attn"}


def _int(cfg: dict[str, Any], key: str) -> int:
    """A whole-number key the shape needs (type and range checked by hf_config.check_config)."""
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise missing(key, value)
    return value


def _layer_types(cfg: dict[str, Any], n_layer: int, kinds: dict[str, str]) -> list[str]:
    types = cfg.get("layer_types")
    if not isinstance(types, list) or len(types) != n_layer:
        raise bad("layer_types", types, f"not a list of {n_layer} layer types")
    for t in types:
        if t not in kinds:
            raise bad("layer_types", t, f"not one of {', '.join(sorted(kinds))}")
    return [kinds[t] for t in types]


def mtp_blocks(cfg: dict[str, Any], arch: str) -> int:
    """Multi-token-prediction blocks the converter appends (conversion/qwen.py _QwenMtpMixin)."""
    n_mtp = int(cfg.get("mtp_num_hidden_layers") or 0) if arch in _QWEN35 else 0
    if _int(cfg, "num_hidden_layers") + n_mtp > MAX_LAYERS:  # llama.cpp asserts LLAMA_MAX_LAYERS
        raise bad("mtp_num_hidden_layers", n_mtp, f"takes the blocks past {MAX_LAYERS}")
    return n_mtp


def block_kinds(cfg: dict[str, Any], arch: str) -> tuple[str, ...]:
    """Per GGUF block: "attn" (KV cache), "recr" (recurrent state) or "mtp" (Qwen3.5's draft head;
    other families append theirs through Family.mtp_blocks)."""
    n_layer = _int(cfg, "num_hidden_layers")
    if arch in _QWEN35:
        if cfg.get("layer_types") is not None:
            kinds = _layer_types(cfg, n_layer, _QWEN35_KINDS)
        else:  # Qwen3_5TextConfig derives them from the interval
            every = int(cfg.get("full_attention_interval") or QWEN35_FULL_ATTENTION_INTERVAL)
            kinds = ["attn" if (il + 1) % every == 0 else "recr" for il in range(n_layer)]
        return (*kinds, *(["mtp"] * mtp_blocks(cfg, arch)))
    if arch in _LFM2:
        if cfg.get("layer_types") is not None:
            return tuple(_layer_types(cfg, n_layer, _LFM2_KINDS))
        # Lfm2Config: full_attn_idxs lists the attention blocks (all of them when absent)
        idxs = cfg.get("full_attn_idxs")
        if idxs is not None and not (isinstance(idxs, list) and all(isinstance(i, int) for i in idxs)):
            raise bad("full_attn_idxs", idxs, "not a list of layer numbers")
        return tuple("attn" if idxs is None or il in idxs else "recr" for il in range(n_layer))
    if arch == "granitehybrid":
        if cfg.get("layer_types") is None:  # the converter asserts on the older spellings too
            raise missing("layer_types")
        return tuple(_layer_types(cfg, n_layer, _GRANITE_KINDS))
    return ("attn",) * n_layer


def lfm2_ff(cfg: dict[str, Any]) -> int:
    """LFM2's FFN width: block_ff_dim, shrunk to 2/3 and rounded up when auto-adjusted
    (conversion/lfm2.py LFM2Model._add_feed_forward_length)."""
    ff = int(cfg.get("block_ff_dim") or _int(cfg, "intermediate_size"))
    if cfg.get("block_auto_adjust_ff_dim"):
        ff = int(2 * ff / 3)
        if cfg.get("block_ffn_dim_multiplier") is not None:
            ff = int(float(cfg["block_ffn_dim_multiplier"]) * ff)
        multiple = _int(cfg, "block_multiple_of")
        ff = multiple * ((ff + multiple - 1) // multiple)
    return ff


def hybrid_dims(cfg: dict[str, Any], arch: str, dims: dict[str, int]) -> dict[str, int]:
    """The dimensions of the recurrent blocks (named as in hf_tensors); ``dims``: hf_arch's common ones."""
    embd = dims["embd"]
    if arch in _QWEN35:
        k_hd, v_hd = _int(cfg, "linear_key_head_dim"), _int(cfg, "linear_value_head_dim")
        n_k, n_v = _int(cfg, "linear_num_key_heads"), _int(cfg, "linear_num_value_heads")
        if n_v % n_k:  # ggml broadcasts each key head over a whole group of value heads
            raise bad("linear_num_key_heads", n_k, f"does not divide the {n_v} value heads")
        return {"conv_kernel": _int(cfg, "linear_conv_kernel_dim"), "ssm_state": k_hd, "ssm_groups": n_k,
                "ssm_heads": n_v, "ssm_inner": v_hd * n_v, "conv_dim": 2 * k_hd * n_k + v_hd * n_v,
                "embd2": 2 * embd, "one": 1, "ff_shexp": int(cfg.get("shared_expert_intermediate_size") or 0)}  # fmt: skip
    if arch == "lfm2":
        return {"conv_kernel": _int(cfg, "conv_L_cache"), "embd3": 3 * embd, "ff": lfm2_ff(cfg)}
    if arch == "lfm2moe":  # LFM2MoeModel writes intermediate_size as it is (no auto-adjusted width)
        return {"conv_kernel": _int(cfg, "conv_L_cache"), "embd3": 3 * embd}
    if arch == "granitehybrid":
        inner = _int(cfg, "mamba_expand") * embd  # GraniteHybridModel: expand × hidden_size
        heads, groups, state = (
            _int(cfg, "mamba_n_heads"),
            _int(cfg, "mamba_n_groups"),
            _int(cfg, "mamba_d_state"),
        )
        if inner % heads or inner % groups:
            raise bad("mamba_n_heads", heads, f"does not divide the Mamba width {inner}")
        conv = inner + 2 * groups * state
        return {"conv_kernel": _int(cfg, "mamba_d_conv"), "ssm_state": state, "ssm_groups": groups,
                "ssm_heads": heads, "ssm_inner": inner, "conv_dim": conv, "ssm_in": conv + inner + heads,
                "ssm_group_width": inner // groups, "one": 1,
                "ff_shared": _int(cfg, "shared_intermediate_size")}  # fmt: skip
    return {}


def hybrid_metadata(cfg: dict[str, Any], arch: str, dims: dict[str, int]) -> dict[str, Any]:
    """The keys the converter adds (or overrides) for a hybrid; ``dims`` from hf_arch._dims."""
    a, kinds = arch, block_kinds(cfg, arch)
    meta: dict[str, Any] = {}
    if arch in _QWEN35:
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        factor = (
            rope.get("partial_rotary_factor") or cfg.get("partial_rotary_factor") or QWEN35_PARTIAL_ROTARY
        )
        sections = list(rope.get("mrope_section") or QWEN35_MROPE_SECTIONS)
        meta.update({
            f"{a}.ssm.conv_kernel": dims["conv_kernel"],
            f"{a}.ssm.state_size": dims["ssm_state"],
            f"{a}.ssm.group_count": dims["ssm_groups"],
            f"{a}.ssm.time_step_rank": dims["ssm_heads"],
            f"{a}.ssm.inner_size": dims["ssm_inner"],
            f"{a}.full_attention_interval": int(cfg.get("full_attention_interval") or QWEN35_FULL_ATTENTION_INTERVAL),
            f"{a}.rope.dimension_count": int(dims["hd"] * float(factor)),
            f"{a}.rope.dimension_sections": (sections + [0] * 4)[:4],
        })  # fmt: skip
        # Always: the converter reads the config through AutoConfig, whose Qwen3_5TextConfig derives
        # layer_types from the interval when the file has none.
        meta[f"{a}.attention.recurrent_layers"] = [k == "recr" for k in kinds]
        if dims["ff_shexp"]:  # conversion/qwen.py Qwen2MoeModel
            meta[f"{a}.expert_shared_feed_forward_length"] = dims["ff_shexp"]
    elif arch in _LFM2:
        meta.update({
            f"{a}.feed_forward_length": dims["ff"],
            f"{a}.attention.head_count_kv": [dims["n_kv"] if k == "attn" else 0 for k in kinds],
            f"{a}.shortconv.l_cache": dims["conv_kernel"],
        })  # fmt: skip
        if arch == "lfm2moe":
            meta.update({
                f"{a}.leading_dense_block_count": _int(cfg, "num_dense_layers"),
                f"{a}.expert_gating_func": LFM2_MOE_GATING,
            })  # fmt: skip
        if cfg.get("norm_eps") is not None:
            meta[f"{a}.attention.layer_norm_rms_epsilon"] = float(cfg["norm_eps"])
    elif arch == "granitehybrid":
        meta.update({
            f"{a}.context_length": GRANITE_HYBRID_CONTEXT,
            f"{a}.attention.head_count_kv": [dims["n_kv"] if k == "attn" else 0 for k in kinds],
            f"{a}.rope.dimension_count": dims["hd"],  # conversion/llama.py: hidden_size / heads
            f"{a}.rope.scaling.finetuned": False,  # no positions in attention (NoPE)
            f"{a}.expert_count": dims["expert"],  # written even when 0 (conversion/base.py)
            f"{a}.expert_used_count": int(cfg.get("num_experts_per_tok") or 0),
            f"{a}.expert_shared_feed_forward_length": dims["ff_shared"],
            f"{a}.ssm.conv_kernel": dims["conv_kernel"],
            f"{a}.ssm.state_size": dims["ssm_state"],
            f"{a}.ssm.group_count": dims["ssm_groups"],
            f"{a}.ssm.inner_size": dims["ssm_inner"],
            f"{a}.ssm.time_step_rank": dims["ssm_heads"],
        })  # fmt: skip
        for key, gguf_key in (("attention_multiplier", "attention.scale"), ("embedding_multiplier", "embedding_scale"),
                              ("residual_multiplier", "residual_scale"), ("logits_scaling", "logit_scale")):  # fmt: skip
            if cfg.get(key):
                meta[f"{a}.{gguf_key}"] = float(cfg[key])
    return meta


HYBRID = Family(
    model_types=HYBRID_MODEL_TYPES, defaults=HYBRID_DEFAULTS, dims=hybrid_dims, metadata=hybrid_metadata
)

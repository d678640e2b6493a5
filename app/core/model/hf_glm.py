"""GLM's MoE models as llama.cpp's converter writes them: GLM-4.5 (``Glm4MoeForCausalLM``, GGUF
architecture ``glm4moe``) and GLM-4.7-Flash (``Glm4MoeLiteForCausalLM``, written as ``deepseek2``).

Mirrors ``conversion/glm.py`` Glm4MoeModel and ``src/models/glm4-moe.cpp``: attention with q/k/v
biases and a partial rotary, the first ``first_k_dense_replace`` blocks dense, the rest routed
experts behind a sigmoid router with a score-correction bias plus ``n_shared_experts`` shared ones;
``num_nextn_predict_layers`` multi-token-prediction blocks follow the trunk (a whole MoE block plus
its NextN projection and its own copy of the embedding). llama.cpp loads those only for a draft
context (TENSOR_SKIP otherwise), so they are in the file but not in memory.

GLM-4.7-Flash attends like DeepSeek-V2 (``conversion/glm.py`` Glm4MoeLiteModel(DeepseekV2Model),
``src/models/deepseek2.cpp``): multi-head latent attention, whose cache holds one compressed
latent of ``kv_lora_rank + qk_rope_head_dim`` per token and layer and no V (written as one KV head
of that width; :mod:`app.core.model.info` reads it as MLA). Its draft-head block is counted in the
metadata, but its tensors are left out here: no source lists them for this checkpoint, and
llama.cpp loads a GGUF without them (deepseek2.cpp ``trunk_only``).
"""

from __future__ import annotations

from typing import Any

from app.core.model.hf_config import bad
from app.core.model.hf_family import Config, Dims, Family
from app.core.model.hf_tensors import ATTENTION, DENSE_FFN, EMBEDDINGS, FFN_NORM, LAYER, QWEN_MOE_FFN, spec
from app.core.model.sanity import MAX_HEAD_DIM, MAX_LAYERS

# transformers src/transformers/models/glm4_moe/configuration_glm4_moe.py (Glm4MoeConfig defaults).
GLM4_MOE_DEFAULTS: dict[str, Any] = {
    "vocab_size": 151552, "num_key_value_heads": 8, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False, "attention_bias": False, "moe_intermediate_size": 1408, "num_experts_per_tok": 8,
    "n_shared_experts": 1, "n_routed_experts": 128, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
    "norm_topk_prob": True, "use_qk_norm": False, "routed_scaling_factor": 1.0,
}  # fmt: skip
# transformers src/transformers/models/glm4_moe_lite/configuration_glm4_moe_lite.py (Glm4MoeLiteConfig).
GLM4_MOE_LITE_DEFAULTS: dict[str, Any] = {
    "vocab_size": 154880, "num_key_value_heads": 20, "max_position_embeddings": 202752, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False, "moe_intermediate_size": 1536, "num_experts_per_tok": 4, "n_shared_experts": 1,
    "n_routed_experts": 64, "n_group": 1, "topk_group": 1, "norm_topk_prob": True, "kv_lora_rank": 512,
    "q_lora_rank": 768, "qk_rope_head_dim": 64, "v_head_dim": 256, "qk_nope_head_dim": 192,
}  # fmt: skip
# Glm4MoeModel.set_gguf_parameters: rope over half of each head unless the config says otherwise.
GLM_PARTIAL_ROTARY = 0.5
SIGMOID_GATING = 2  # gguf.ExpertGatingFuncType.SIGMOID, which Glm4MoeModel always writes

_SHARED_EXPERTS = (
    spec("blk.{bid}.exp_probs_b.bias", LAYER + "mlp.gate.e_score_correction_bias", "expert", when="moe"),
    spec("blk.{bid}.ffn_gate_shexp.weight", LAYER + "mlp.shared_experts.gate_proj.weight", "embd", "ff_shexp",
         when="moe"),
    spec("blk.{bid}.ffn_up_shexp.weight", LAYER + "mlp.shared_experts.up_proj.weight", "embd", "ff_shexp", when="moe"),
    spec("blk.{bid}.ffn_down_shexp.weight", LAYER + "mlp.shared_experts.down_proj.weight", "ff_shexp", "embd",
         when="moe"),
)  # fmt: skip
_BLOCK = (
    *ATTENTION,
    spec("blk.{bid}.attn_q_norm.weight", LAYER + "self_attn.q_norm.weight", "hd", when="qk_norm"),
    spec("blk.{bid}.attn_k_norm.weight", LAYER + "self_attn.k_norm.weight", "hd", when="qk_norm"),
    spec("blk.{bid}.post_attention_norm.weight", LAYER + "post_attention_layernorm.weight", "embd"),
    *DENSE_FFN,
    *QWEN_MOE_FFN,  # the router (mlp.gate) and the routed experts, one checkpoint tensor per expert
    *_SHARED_EXPERTS,
    # The draft head's own tensors (tensor_mapping.py NEXTN_*), in the block after the trunk.
    spec("blk.{bid}.nextn.eh_proj.weight", LAYER + "eh_proj.weight", "embd2", "embd", when="mtp"),
    spec("blk.{bid}.nextn.enorm.weight", LAYER + "enorm.weight", "embd", when="mtp"),
    spec("blk.{bid}.nextn.hnorm.weight", LAYER + "hnorm.weight", "embd", when="mtp"),
    spec("blk.{bid}.nextn.shared_head_norm.weight", LAYER + "shared_head.norm.weight", "embd", when="mtp"),
    spec("blk.{bid}.nextn.embed_tokens.weight", LAYER + "embed_tokens.weight", "embd", "vocab", when="mtp"),
)  # fmt: skip


# DeepSeek-V2 attention (tensor_mapping.py ATTN_Q_A ... ATTN_V_B); kv_b_proj is split per head into
# K (the part without rope) and V (DeepseekV2Model.modify_tensors).
_MLA_BLOCK = (
    spec("blk.{bid}.attn_norm.weight", LAYER + "input_layernorm.weight", "embd"),
    spec("blk.{bid}.attn_q_a.weight", LAYER + "self_attn.q_a_proj.weight", "embd", "q_lora"),
    spec("blk.{bid}.attn_q_a_norm.weight", LAYER + "self_attn.q_a_layernorm.weight", "q_lora"),
    spec("blk.{bid}.attn_q_b.weight", LAYER + "self_attn.q_b_proj.weight", "q_lora", "mla_q"),
    spec("blk.{bid}.attn_kv_a_mqa.weight", LAYER + "self_attn.kv_a_proj_with_mqa.weight", "embd", "kv_a"),
    spec("blk.{bid}.attn_kv_a_norm.weight", LAYER + "self_attn.kv_a_layernorm.weight", "kv_lora"),
    spec("blk.{bid}.attn_k_b.weight", LAYER + "self_attn.kv_b_proj.weight", "qk_nope", "kv_lora", "n_head"),
    spec("blk.{bid}.attn_v_b.weight", None, "kv_lora", "v_head", "n_head"),
    spec("blk.{bid}.attn_output.weight", LAYER + "self_attn.o_proj.weight", "mla_o", "embd"),
    *FFN_NORM,
    *DENSE_FFN,
    *QWEN_MOE_FFN,
    *_SHARED_EXPERTS,
)  # fmt: skip
# Glm4MoeLiteModel has no q_proj variant: q_lora_rank is always set (DeepSeek-V2-Lite's path differs).
_MLA_KEYS = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


def _mtp_blocks(cfg: Config, arch: str) -> int:
    n_mtp = cfg.get("num_nextn_predict_layers") or 0
    if not isinstance(n_mtp, int) or isinstance(n_mtp, bool) or not 0 <= n_mtp <= MAX_LAYERS:
        raise bad("num_nextn_predict_layers", n_mtp, f"not a number of layers up to {MAX_LAYERS}")
    return n_mtp


def _trunk_mtp_blocks(cfg: Config, arch: str) -> int:
    """Draft-head blocks with tensors: GLM-4.5's (GLM-4.7-Flash only counts its own, see above)."""
    return _mtp_blocks(cfg, arch) if arch == "glm4moe" else 0


def _whole(cfg: Config, key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_HEAD_DIM:
        raise bad(key, value, f"not a width from 1 to {MAX_HEAD_DIM}")
    return value


def _dims(cfg: Config, arch: str, dims: Dims) -> Dims:
    shared = int(cfg.get("n_shared_experts") or 0)
    out = {"ff_shexp": dims["ff_exp"] * shared, "embd2": 2 * dims["embd"]}
    if arch == "deepseek2":
        q_lora, kv_lora, nope, rope, v_head = (_whole(cfg, k) for k in _MLA_KEYS)
        out.update({"q_lora": q_lora, "kv_lora": kv_lora, "qk_nope": nope, "kv_a": kv_lora + rope,
                    "mla_q": dims["n_head"] * (nope + rope), "v_head": v_head, "mla_o": dims["n_head"] * v_head,
                    "mla_rope": rope})  # fmt: skip
    return out


def _features(cfg: Config, arch: str) -> frozenset[str]:
    return frozenset({"qk_norm"}) if cfg.get("use_qk_norm") else frozenset()


def _metadata(cfg: Config, arch: str, dims: Dims) -> dict[str, Any]:
    a = arch
    if arch == "deepseek2":
        meta = _mla_metadata(cfg, arch, dims)
    else:
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        factor = rope.get("partial_rotary_factor") or cfg.get("partial_rotary_factor") or GLM_PARTIAL_ROTARY
        meta = {
            f"{a}.rope.dimension_count": int(dims["hd"] * float(factor)),
            f"{a}.expert_gating_func": SIGMOID_GATING,
        }
    for key, gguf_key, kind in (
        ("n_shared_experts", "expert_shared_count", int),
        ("first_k_dense_replace", "leading_dense_block_count", int),
        ("routed_scaling_factor", "expert_weights_scale", float),
        ("norm_topk_prob", "expert_weights_norm", bool),
    ):
        if cfg.get(key) is not None:
            meta[f"{a}.{gguf_key}"] = kind(cfg[key])
    return meta


def _mla_metadata(cfg: Config, arch: str, dims: Dims) -> dict[str, Any]:
    """DeepseekV2Model.set_gguf_parameters (no gating function: llama.cpp infers GLM-4.7's sigmoid)
    and Glm4MoeLiteModel's draft-head count (the blocks have no tensors here, see above)."""
    a, n_mtp = arch, _mtp_blocks(cfg, arch)
    meta: dict[str, Any] = {
        f"{a}.attention.head_count_kv": 1,  # MLA written as one shared KV head
        f"{a}.attention.q_lora_rank": dims["q_lora"],
        f"{a}.attention.kv_lora_rank": dims["kv_lora"],
        f"{a}.attention.key_length": dims["kv_a"],
        f"{a}.attention.value_length": dims["kv_lora"],
        f"{a}.attention.key_length_mla": dims["qk_nope"] + dims["mla_rope"],
        f"{a}.attention.value_length_mla": dims["v_head"],
        f"{a}.expert_feed_forward_length": dims["ff_exp"],
        f"{a}.expert_shared_count": int(cfg.get("n_shared_experts") or 0),
        f"{a}.rope.dimension_count": dims["mla_rope"],
        f"{a}.block_count": int(cfg["num_hidden_layers"]) + n_mtp,
    }
    if n_mtp:
        meta[f"{a}.nextn_predict_layers"] = n_mtp
    return meta


GLM4_MOE = Family(
    model_types={"glm4_moe": "glm4moe", "glm4_moe_lite": "deepseek2"},
    defaults={"glm4_moe": GLM4_MOE_DEFAULTS, "glm4_moe_lite": GLM4_MOE_LITE_DEFAULTS},
    tensors={"glm4moe": (EMBEDDINGS[:3], _BLOCK), "deepseek2": (EMBEDDINGS[:3], _MLA_BLOCK)},
    dims=_dims,
    features=_features,
    mtp_blocks=_trunk_mtp_blocks,
    metadata=_metadata,
)

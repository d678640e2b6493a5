"""Gemma 4 (``Gemma4ForConditionalGeneration``/``Gemma4ForCausalLM``) as llama.cpp's converter writes it.

Mirrors ``conversion/gemma.py`` Gemma4Model and ``src/models/gemma4.cpp``. Unlike Gemma 3, the
blocks differ from one another:

- sliding-window blocks have heads ``head_dim`` wide and ``num_key_value_heads`` KV heads;
  full-attention blocks ``global_head_dim`` and ``num_global_key_value_heads`` (when set), and with
  ``attention_k_eq_v`` no V projection (V is K; llama.cpp still caches a V);
- the last ``num_kv_shared_layers`` blocks have no K and V of their own: they read the KV cache of
  the last earlier block of their kind, and with ``use_double_wide_mlp`` their FFN is twice as wide;
- E2B/E4B add per-layer embeddings (PLE): a second, narrow embedding for every block;
- 26B-A4B adds routed experts (gate and up stored fused) beside the dense FFN, which acts as the
  shared expert.
"""

from __future__ import annotations

from typing import Any

from app.core.model.hf_config import bad, missing
from app.core.model.hf_family import Config, Dims, Family
from app.core.model.hf_tensors import LAYER, spec

# transformers src/transformers/models/gemma4/configuration_gemma4.py (Gemma4TextConfig and its
# __post_init__: global_head_dim 512, num_global_key_value_heads None).
GEMMA4_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262144, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "global_head_dim": 512, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    "sliding_window": 512, "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 256,
    "attention_k_eq_v": False, "num_kv_shared_layers": 0, "enable_moe_block": False, "use_double_wide_mlp": False,
}  # fmt: skip
# Gemma4TextConfig.__post_init__ without layer_types: 5 sliding blocks, then a full one; the last
# block always attends fully.
SLIDING_PATTERN = 6
_KINDS = {"sliding_attention": True, "full_attention": False}

_GLOBAL = (
    spec("token_embd.weight", "model.embed_tokens.weight", "embd", "vocab"),
    spec("output_norm.weight", "model.norm.weight", "embd"),
    spec("output.weight", "lm_head.weight", "embd", "vocab", when="untied"),
    # Generated (Gemma4Model.generate_extra_tensors): frequency factors that leave 3/4 of a full
    # block's head unrotated ("proportional" rope).
    spec("rope_freqs.weight", None, "rot_half_full"),
    spec("per_layer_token_embd.weight", "model.embed_tokens_per_layer.weight", "ple_all", "vocab_ple", when="ple"),
    spec("per_layer_model_proj.weight", "model.per_layer_model_projection.weight", "embd", "ple_all", when="ple"),
    spec("per_layer_proj_norm.weight", "model.per_layer_projection_norm.weight", "ple", when="ple"),
)  # fmt: skip
_BLOCK = (
    spec("blk.{bid}.attn_norm.weight", LAYER + "input_layernorm.weight", "embd"),
    spec("blk.{bid}.attn_q.weight", LAYER + "self_attn.q_proj.weight", "embd", "q"),
    spec("blk.{bid}.attn_k.weight", LAYER + "self_attn.k_proj.weight", "embd", "k", when="own_kv"),
    spec("blk.{bid}.attn_v.weight", LAYER + "self_attn.v_proj.weight", "embd", "v", when="v_proj"),
    spec("blk.{bid}.attn_output.weight", LAYER + "self_attn.o_proj.weight", "q", "embd"),
    spec("blk.{bid}.attn_q_norm.weight", LAYER + "self_attn.q_norm.weight", "hd"),
    spec("blk.{bid}.attn_k_norm.weight", LAYER + "self_attn.k_norm.weight", "hd", when="own_kv"),
    spec("blk.{bid}.post_attention_norm.weight", LAYER + "post_attention_layernorm.weight", "embd"),
    spec("blk.{bid}.layer_output_scale.weight", LAYER + "layer_scalar", "one"),
    spec("blk.{bid}.ffn_norm.weight", LAYER + "pre_feedforward_layernorm.weight", "embd"),
    spec("blk.{bid}.ffn_gate.weight", LAYER + "mlp.gate_proj.weight", "embd", "ff"),
    spec("blk.{bid}.ffn_up.weight", LAYER + "mlp.up_proj.weight", "embd", "ff"),
    spec("blk.{bid}.ffn_down.weight", LAYER + "mlp.down_proj.weight", "ff", "embd"),
    spec("blk.{bid}.post_ffw_norm.weight", LAYER + "post_feedforward_layernorm.weight", "embd"),
    spec("blk.{bid}.ffn_gate_inp.weight", LAYER + "router.proj.weight", "embd", "expert", when="moe"),
    spec("blk.{bid}.ffn_gate_inp.scale", LAYER + "router.scale", "embd", when="moe"),
    spec("blk.{bid}.pre_ffw_norm_2.weight", LAYER + "pre_feedforward_layernorm_2.weight", "embd", when="moe"),
    spec("blk.{bid}.post_ffw_norm_1.weight", LAYER + "post_feedforward_layernorm_1.weight", "embd", when="moe"),
    spec("blk.{bid}.post_ffw_norm_2.weight", LAYER + "post_feedforward_layernorm_2.weight", "embd", when="moe"),
    spec("blk.{bid}.ffn_gate_up_exps.weight", LAYER + "experts.gate_up_proj", "embd", "ff2_exp", "expert", when="moe"),
    spec("blk.{bid}.ffn_down_exps.weight", LAYER + "experts.down_proj", "ff_exp", "embd", "expert", when="moe"),
    spec("blk.{bid}.ffn_down_exps.scale", LAYER + "router.per_expert_scale", "expert", when="moe"),
    spec("blk.{bid}.inp_gate.weight", LAYER + "per_layer_input_gate.weight", "embd", "ple", when="ple"),
    spec("blk.{bid}.proj.weight", LAYER + "per_layer_projection.weight", "ple", "embd", when="ple"),
    spec("blk.{bid}.post_norm.weight", LAYER + "post_per_layer_input_norm.weight", "embd", when="ple"),
)  # fmt: skip


def _whole(cfg: Config, key: str) -> int:
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise missing(key, value)
    return value


def sliding_layers(cfg: Config) -> list[bool]:
    """Per block: True for a sliding-window block (the converter's sliding_window_pattern)."""
    n_layer = _whole(cfg, "num_hidden_layers")
    types = cfg.get("layer_types")
    if types is None:
        return [(il + 1) % SLIDING_PATTERN != 0 and il != n_layer - 1 for il in range(n_layer)]
    if not isinstance(types, list) or len(types) != n_layer or any(t not in _KINDS for t in types):
        raise bad("layer_types", types, f"not {n_layer} of {', '.join(_KINDS)}")
    return [_KINDS[t] for t in types]


def _kv_heads(cfg: Config, dims: Dims, swa: bool) -> int:
    full = cfg.get("num_global_key_value_heads")
    n_kv = dims["n_kv"] if swa or full is None else _whole(cfg, "num_global_key_value_heads")
    if not n_kv or dims["n_head"] % n_kv:
        raise bad("num_global_key_value_heads", n_kv, f"does not divide the {dims['n_head']} heads")
    return n_kv


def _first_shared(cfg: Config) -> int:
    """The first block without a KV cache of its own (llama.cpp's n_layer_kv_from_start)."""
    n_layer, shared = _whole(cfg, "num_hidden_layers"), _whole(cfg, "num_kv_shared_layers")
    first = n_layer - shared
    if not shared:
        return first
    # llama.cpp maps a shared block onto block first-1 if it attends fully, first-2 if it slides
    # (src/llama-model.cpp create_memory, reuse), and asserts that block has a cache of the same kind.
    swa = sliding_layers(cfg)
    if first < 2 or any(swa[first - (2 if s else 1)] != s for s in swa[first:]):
        raise bad("num_kv_shared_layers", shared, "does not leave a sliding and then a full block before the "
                  "shared ones, which llama.cpp needs")  # fmt: skip
    return first


def _dims(cfg: Config, arch: str, dims: Dims) -> Dims:
    global_hd, ple = _whole(cfg, "global_head_dim"), _whole(cfg, "hidden_size_per_layer_input")
    if not global_hd:
        raise missing("global_head_dim", global_hd)
    n_layer = _whole(cfg, "num_hidden_layers")
    return {"hd_full": global_hd, "rot_half_full": global_hd // 2, "ple": ple, "ple_all": ple * n_layer,
            "vocab_ple": _whole(cfg, "vocab_size_per_layer_input") or dims["vocab"], "ff2_exp": 2 * dims["ff_exp"]}  # fmt: skip


def _features(cfg: Config, arch: str) -> frozenset[str]:
    return frozenset({"ple"}) if cfg.get("hidden_size_per_layer_input") else frozenset()


def _block(cfg: Config, arch: str, dims: Dims, bid: int) -> tuple[Dims, frozenset[str]]:
    swa = sliding_layers(cfg)[bid]
    hd = dims["hd"] if swa else dims["hd_full"]
    n_kv = _kv_heads(cfg, dims, swa)
    own_kv = bid < _first_shared(cfg)
    wide = 2 if cfg.get("use_double_wide_mlp") and not own_kv else 1  # Gemma4Model: 2x on shared blocks
    feats = set()
    if own_kv:
        feats.add("own_kv")
        if swa or not cfg.get("attention_k_eq_v"):
            feats.add("v_proj")
    own = {"hd": hd, "q": dims["n_head"] * hd, "k": n_kv * hd, "v": n_kv * hd, "ff": wide * dims["ff"]}
    return own, frozenset(feats)


def _metadata(cfg: Config, arch: str, dims: Dims) -> dict[str, Any]:
    """Gemma3Model and Gemma4Model.set_gguf_parameters beyond hf_arch's common keys."""
    a, swa = arch, sliding_layers(cfg)
    rope = cfg.get("rope_parameters") or {}
    local = (rope.get("sliding_attention") or {}).get("rope_theta")
    meta: dict[str, Any] = {
        f"{a}.attention.sliding_window": int(cfg.get("sliding_window") or 0),
        f"{a}.attention.shared_kv_layers": _whole(cfg, "num_kv_shared_layers"),
        f"{a}.embedding_length_per_layer_input": dims["ple"],
        f"{a}.attention.sliding_window_pattern": swa,
        f"{a}.attention.key_length": dims["hd_full"],
        f"{a}.attention.value_length": dims["hd_full"],
        f"{a}.attention.key_length_swa": dims["hd"],
        f"{a}.attention.value_length_swa": dims["hd"],
        # "proportional" rope rotates a quarter of a full head through rope_freqs: n_rot is the head.
        f"{a}.rope.dimension_count": dims["hd_full"],
        f"{a}.rope.dimension_count_swa": dims["hd"],  # partial_rotary_factor of the whole config: 1.0
    }  # fmt: skip
    if local is not None:
        meta[f"{a}.rope.freq_base_swa"] = float(local)
    if cfg.get("final_logit_softcapping"):
        meta[f"{a}.final_logit_softcapping"] = float(cfg["final_logit_softcapping"])
    if cfg.get("num_global_key_value_heads") is not None:
        meta[f"{a}.attention.head_count_kv"] = [_kv_heads(cfg, dims, s) for s in swa]
    if cfg.get("use_double_wide_mlp"):
        first = _first_shared(cfg)
        meta[f"{a}.feed_forward_length"] = [dims["ff"] * (1 if il < first else 2) for il in range(len(swa))]
    if dims["expert"] > 1:
        meta[f"{a}.expert_feed_forward_length"] = dims["ff_exp"]
    return meta


GEMMA4 = Family(
    model_types={"gemma4": "gemma4", "gemma4_text": "gemma4"},
    defaults={"gemma4": GEMMA4_DEFAULTS, "gemma4_text": GEMMA4_DEFAULTS},
    tensors={"gemma4": (_GLOBAL, _BLOCK)},
    dims=_dims,
    features=_features,
    block=_block,
    metadata=_metadata,
)

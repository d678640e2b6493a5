"""Describe a Hugging Face checkpoint as the GGUF that llama.cpp's converter would write from it.

The advisor reads one input format, a GGUF-shaped header (:mod:`app.core.model.gguf_header`). For a
``config.json`` we build that header ourselves: the metadata keys and the full tensor table (names,
ggml-order shapes, types) that ``convert_hf_to_gguf.py`` writes, mirrored from the llama.cpp
vendored in llama-cpp-python 0.3.36 (``conversion/{base,llama,qwen,gemma,phi}.py`` for keys and
types). Which tensors each architecture has are the tables of :mod:`app.core.model.hf_tensors`;
this module sizes them from the config. The families whose converter classes do more than the
common ones describe the rest as a :class:`~app.core.model.hf_family.Family`: the hybrids, whose
blocks keep a recurrent state instead of a KV cache (Qwen3.5, LFM2, Granite 4.0-H:
:mod:`app.core.model.hf_hybrid`), gpt-oss (:mod:`app.core.model.hf_gpt_oss`), Gemma 4
(:mod:`app.core.model.hf_gemma4`) and GLM-4.5 MoE (:mod:`app.core.model.hf_glm`).

Two deliberate differences: ``{arch}.vocab_size`` is written for every architecture (the converter
carries the vocabulary size in the tokenizer list, which a config has no room for), and the
vocabulary is ``vocab_size`` rows even where the converter trims Gemma 3's embedding to the
tokenizer's length (the same number for every released Gemma 3).
"""

from __future__ import annotations

import re
from typing import Any

from app.core.errors import UnsupportedArchitectureError
from app.core.model.gguf_header import GGUFHeader, TensorInfo
from app.core.model.hf_config import CONTEXT_KEYS, bad, check_config, missing, section
from app.core.model.hf_family import Family
from app.core.model.hf_gemma4 import GEMMA4
from app.core.model.hf_glm import GLM4_MOE
from app.core.model.hf_gpt_oss import GPT_OSS
from app.core.model.hf_hybrid import HYBRID, block_kinds
from app.core.model.hf_tensors import ARCH_TENSORS, ArchTable, TensorSpec
from app.core.model.sanity import MAX_HEAD_DIM, MAX_LAYERS

FAMILIES: tuple[Family, ...] = (HYBRID, GPT_OSS, GEMMA4, GLM4_MOE)

# HF model_type → GGUF architecture (the converter picks by class: conversion/*.py @register).
MODEL_TYPES: dict[str, str] = {
    "llama": "llama",
    "mistral": "llama",  # MistralForCausalLM → LlamaModel (conversion/llama.py)
    "mixtral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen3_moe": "qwen3moe",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "gemma3_text": "gemma3",
    "phi3": "phi3",
    # Mistral3ForConditionalGeneration: the text model is llama's, written as its own arch
    # (conversion/mistral3.py Ministral3Model; GGUFs from before that class say "llama").
    "mistral3": "mistral3",
    **{t: a for f in FAMILIES for t, a in f.model_types.items()},
}

# What transformers fills in when config.json leaves a key out (the converter reads configs through
# AutoConfig). Source: transformers src/transformers/models/<type>/configuration_<type>.py.
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"tie_word_embeddings": False, "max_position_embeddings": 2048, "rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "mistral": {"tie_word_embeddings": False, "num_key_value_heads": 8, "max_position_embeddings": 131072,
                "rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "mixtral": {"tie_word_embeddings": False, "num_key_value_heads": 8, "num_local_experts": 8,
                "num_experts_per_tok": 2, "rope_theta": 1e6, "rms_norm_eps": 1e-5},
    "qwen2": {"tie_word_embeddings": False, "rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "qwen3": {"tie_word_embeddings": False, "head_dim": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "qwen3_moe": {"tie_word_embeddings": False, "decoder_sparse_step": 1, "mlp_only_layers": [],
                  "rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    "gemma": {"tie_word_embeddings": True, "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6},
    "gemma2": {"tie_word_embeddings": True, "vocab_size": 256000, "num_attention_heads": 8, "num_key_value_heads": 4,
               "head_dim": 256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
               "sliding_window": 4096, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0},
    "gemma3_text": {"tie_word_embeddings": True, "vocab_size": 262208, "num_attention_heads": 8,
                    "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
                    "rms_norm_eps": 1e-6, "rope_theta": 1e6, "rope_local_base_freq": 10000.0,
                    "sliding_window": 4096, "sliding_window_pattern": 6},
    "phi3": {"tie_word_embeddings": False, "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
             "rope_theta": 10000.0, "rms_norm_eps": 1e-5},
    **{t: dict(d) for f in FAMILIES for t, d in f.defaults.items()},
}  # fmt: skip
# GGUF architecture → its tensor table (app.core.model.hf_tensors and the families' own).
TABLES: dict[str, ArchTable] = {**ARCH_TENSORS, **{a: t for f in FAMILIES for a, t in f.tensors.items()}}
_FAMILY_OF: dict[str, Family] = {arch: f for f in FAMILIES for arch in f.archs}
_BASE = Family(model_types={}, defaults={})  # an architecture with nothing beyond the common keys

# The converter skips lm_head.weight for these (conversion/gemma.py filter_tensors): always tied.
NO_LM_HEAD = ("gemma", "gemma2")
# general.file_type per converter --outtype (llama.h llama_ftype).
FILE_TYPES: dict[str, int] = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}
# Tensors the converter always keeps in F32 whatever the outtype (conversion/base.py prepare_tensors).
# Also the convolution kernels (SSM_CONV1D, SHORTCONV_CONV there) and every tensor whose name does
# not end in .weight (ssm_a, ssm_d: no suffix; Gemma 4's router and expert scales).
_F32_ALWAYS = re.compile(
    r"(\.bias|_norm\.weight|\.ffn_gate_inp(_shexp)?\.weight|^rope_\w+\.weight|\.ssm_conv1d\.weight"
    r"|\.shortconv\.conv\.weight|^blk\.\d+\.ssm_[ad]|\.scale)$"
)


# Where configs keep their expert counts and widths: the names conversion/base.py (find_hparam) and
# the family classes look under, first match wins.
_EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
_USED_KEYS = ("num_experts_per_tok", "num_experts_per_token", "top_k_experts")
_EXPERT_FF_KEYS = ("moe_intermediate_size", "expert_intermediate_size")
# Dense blocks before the first MoE block: GLM's and DeepSeek's name, LFM2-MoE's.
_DENSE_LEAD_KEYS = ("first_k_dense_replace", "num_dense_layers")


def _family(arch: str) -> Family:
    return _FAMILY_OF.get(arch, _BASE)


def _first(cfg: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((cfg[k] for k in keys if cfg.get(k) is not None), None)


def supported_model_types() -> tuple[str, ...]:
    return tuple(sorted(MODEL_TYPES))


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's config: multimodal configs nest it under ``text_config`` (the converter
    merges it over the top level, conversion/base.py TextModel.__init__), plus transformers' defaults."""
    nested = section("text_config", config.get("text_config"))
    merged = {**config, **nested} if nested is not None else dict(config)
    model_type = merged.get("model_type") or ""
    if not isinstance(model_type, str):
        raise bad("model_type", model_type, "not a string")
    if model_type == "gemma3":  # a text_config without its own model_type still describes gemma3_text
        model_type = "gemma3_text"
    defaults = HF_DEFAULTS.get(model_type, {})
    out = {**defaults, **{k: v for k, v in merged.items() if v is not None or k not in defaults}}
    out["model_type"] = model_type
    return out


def gguf_arch(config: dict[str, Any]) -> str:
    """The GGUF ``general.architecture`` for a config.json; raises for unknown model types. The
    converter picks its class by the outer config (Mistral3ForConditionalGeneration's text model
    says "mistral" but is written as mistral3), so a known outer model_type wins."""
    outer = config.get("model_type")
    if isinstance(outer, str) and outer in MODEL_TYPES:
        return MODEL_TYPES[outer]
    model_type = text_config(config)["model_type"]
    try:
        return MODEL_TYPES[model_type]
    except KeyError:
        shown = repr(model_type[:80]) if model_type else "(none: config.json has no model_type)"
        raise UnsupportedArchitectureError(
            f"TailorLM cannot describe the Hugging Face model type {shown}. "
            f"Supported: {', '.join(supported_model_types())}.",
            hint="Download a GGUF build of the model instead and open that file.",
        ) from None


def _need(cfg: dict[str, Any], key: str) -> int:
    """A key the shape needs; its type and range were checked by ``check_config``."""
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise missing(key, value)
    return value


def _rope(cfg: dict[str, Any]) -> tuple[dict[str, Any], float | None, float | None]:
    """(global rope parameters, rope_theta, local rope_theta) from the old or the v5 config style."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    full = dict(params.get("full_attention") or params)
    local = (params.get("sliding_attention") or {}).get("rope_theta") or cfg.get("rope_local_base_freq")
    theta = full.get("rope_theta") or cfg.get("rope_theta")
    if "rope_type" not in full and "type" in full:
        full["rope_type"] = full["type"]
    return full, theta, local


def _dims(cfg: dict[str, Any], arch: str) -> dict[str, int]:
    embd, n_head = _need(cfg, "hidden_size"), _need(cfg, "num_attention_heads")
    n_kv = int(cfg.get("num_key_value_heads") or n_head)
    if n_head % n_kv:  # each KV head serves a whole group of query heads (ggml_mul_mat broadcasts)
        raise bad("num_key_value_heads", n_kv, f"does not divide the {n_head} attention heads")
    hd = int(cfg.get("head_dim") or embd // n_head)
    if not 1 <= hd <= MAX_HEAD_DIM:  # a derived width, so bounded here rather than in check_config
        raise bad("num_attention_heads", n_head, f"{embd} / {n_head} heads gives heads {hd} wide")
    ff = int(cfg.get("intermediate_size") or 0)
    rope, _, _ = _rope(cfg)
    rot = hd
    if arch == "phi3":  # conversion/phi.py: partial rotary over the whole width
        factor = cfg.get("partial_rotary_factor") or rope.get("partial_rotary_factor") or 1.0
        rot = int(float(factor) * embd) // n_head
    n_expert, used = int(_first(cfg, _EXPERT_KEYS) or 0), int(_first(cfg, _USED_KEYS) or 0)
    if n_expert > 1:  # llama.cpp asserts 0 < n_expert_used <= n_expert (llama-model.cpp load_hparams)
        if not used:
            raise missing("num_experts_per_tok", used)
        if used > n_expert:
            raise bad("num_experts_per_tok", used, f"more than the {n_expert} experts")
    dims = {
        "embd": embd, "vocab": _need(cfg, "vocab_size"), "ff": ff, "ff2": 2 * ff,
        "q": n_head * hd, "k": n_kv * hd, "v": n_kv * hd, "hd": hd, "qkv": (n_head + 2 * n_kv) * hd,
        "expert": n_expert, "used": used, "ff_exp": int(_first(cfg, _EXPERT_FF_KEYS) or ff), "rot_half": rot // 2,
        "n_head": n_head, "n_kv": n_kv, "rot": rot, "q2": 2 * n_head * hd,  # q2: a query and its gate
        "one": 1,
    }  # fmt: skip
    return {**dims, **_family(arch).dims(cfg, arch, dims)}


def _features(cfg: dict[str, Any], arch: str) -> set[str]:
    rope, _, _ = _rope(cfg)
    feats: set[str] = set()
    if not cfg.get("tie_word_embeddings", True) and arch not in NO_LM_HEAD:
        feats.add("untied")
    if arch == "qwen2" or cfg.get("attention_bias"):  # Qwen2 always has q/k/v biases
        feats.add("qkv_bias")
    if cfg.get("attention_bias") and arch == "llama":
        feats.add("o_bias")
    feats |= _family(arch).features(cfg, arch)
    if arch == "llama" and str(rope.get("rope_type", "")).lower() == "llama3":
        feats.add("rope_freqs")
    if arch == "phi3" and rope.get("long_factor"):
        feats.add("longrope")
    return feats


def _layer_is_moe(cfg: dict[str, Any], dims: dict[str, int], bid: int) -> bool:
    if dims["expert"] <= 1 or bid < int(_first(cfg, _DENSE_LEAD_KEYS) or 0):
        return False
    # transformers Qwen3MoeDecoderLayer: dense where listed in mlp_only_layers or off the sparse step.
    step = int(cfg.get("decoder_sparse_step") or 1)
    return bid not in (cfg.get("mlp_only_layers") or []) and (bid + 1) % step == 0


def _tensor_type(cfg: dict[str, Any], arch: str, name: str, shape: tuple[int, ...], dtype: str) -> str:
    forced = _family(arch).tensor_type(cfg, name)
    if forced is not None:
        return forced
    if len(shape) <= 1 or _F32_ALWAYS.search(name):
        return "F32"
    if dtype == "Q8_0" and shape[0] % 32:  # converter: QuantError → F16 (32 = Q8_0 block)
        return "F16"
    return dtype


def _kinds(cfg: dict[str, Any], arch: str) -> tuple[str, ...]:
    """Per GGUF block: "attn", "recr" (a hybrid's recurrent block) or "mtp" (a draft head)."""
    kinds = block_kinds(cfg, arch) + ("mtp",) * _family(arch).mtp_blocks(cfg, arch)
    if len(kinds) > MAX_LAYERS:  # llama.cpp asserts LLAMA_MAX_LAYERS
        raise bad("num_hidden_layers", len(kinds), f"with the draft head, more than {MAX_LAYERS} blocks")
    return kinds


def _tensors(cfg: dict[str, Any], arch: str, dtype: str) -> tuple[TensorInfo, ...]:
    dims = _dims(cfg, arch)
    feats = _features(cfg, arch)
    glob, block = TABLES[arch]
    family = _family(arch)

    def make(spec: TensorSpec, active: set[str], sizes: dict[str, int], bid: int = 0) -> TensorInfo | None:
        if spec.when and spec.when not in active:
            return None
        shape = tuple(sizes[d] for d in spec.shape)
        name = spec.gguf.format(bid=bid)
        return TensorInfo(name, shape, _tensor_type(cfg, arch, name, shape, dtype))

    out = [make(s, feats, dims) for s in glob]
    for bid, kind in enumerate(_kinds(cfg, arch)):
        moe = _layer_is_moe(cfg, dims, bid)
        own, more = family.block(cfg, arch, dims, bid)  # this block's own widths (Gemma 4's differ)
        sizes = {**dims, **own}
        if not (sizes["ff_exp"] if moe else sizes["ff"]):  # a zero-wide FFN: no such model
            raise missing("moe_intermediate_size" if moe else "intermediate_size", sizes["ff"])
        # A draft-head block is an attention block plus its own projection (hf_tensors.NEXTN).
        active = (
            feats | more | ({"moe"} if moe else {"dense"}) | ({kind, "attn"} if kind == "mtp" else {kind})
        )
        out.extend(make(s, active, sizes, bid) for s in block)
    return tuple(t for t in out if t is not None)


def _metadata(cfg: dict[str, Any], arch: str, dtype: str) -> dict[str, Any]:
    dims = _dims(cfg, arch)
    rope, theta, local_theta = _rope(cfg)
    a = arch
    family, kinds, n_layer = _family(arch), _kinds(cfg, arch), _need(cfg, "num_hidden_layers")
    file_type = family.file_type(cfg, dtype)
    meta: dict[str, Any] = {"general.architecture": arch, "general.file_type": file_type or FILE_TYPES[dtype]}
    ctx = next((cfg[k] for k in CONTEXT_KEYS if cfg.get(k)), None)
    meta.update({
        f"{a}.block_count": len(kinds),  # a draft head's blocks count (conversion/qwen.py, glm.py)
        f"{a}.embedding_length": dims["embd"],
        f"{a}.feed_forward_length": dims["ff"],
        f"{a}.attention.head_count": dims["n_head"],
        f"{a}.attention.head_count_kv": dims["n_kv"],
        f"{a}.vocab_size": dims["vocab"],
    })  # fmt: skip
    if len(kinds) > n_layer:
        meta[f"{a}.nextn_predict_layers"] = len(kinds) - n_layer
    if ctx is not None:
        meta[f"{a}.context_length"] = int(ctx)
    if cfg.get("rms_norm_eps") is not None:
        meta[f"{a}.attention.layer_norm_rms_epsilon"] = float(cfg["rms_norm_eps"])
    # The converter writes head_dim when the config states it; we also write it wherever it differs
    # from embd/heads, because llama.cpp would otherwise assume the quotient.
    if (
        cfg.get("head_dim") is not None
        or dims["hd"] * dims["n_head"] != dims["embd"]
        or arch.startswith("gemma")
    ):
        meta[f"{a}.attention.key_length"] = dims["hd"]
        meta[f"{a}.attention.value_length"] = dims["hd"]
    if arch not in NO_LM_HEAD and theta is not None:  # Gemma(2)Model.set_gguf_parameters: no rope keys
        meta[f"{a}.rope.freq_base"] = float(theta)
    if local_theta is not None and arch == "gemma3":
        meta[f"{a}.rope.freq_base_swa"] = float(local_theta)
    rope_type, factor = str(rope.get("rope_type", "")).lower(), rope.get("factor")
    if rope_type == "linear" and factor is not None:
        meta.update({f"{a}.rope.scaling.type": "linear", f"{a}.rope.scaling.factor": float(factor)})
    elif rope_type == "yarn" and factor is not None:
        meta.update({f"{a}.rope.scaling.type": "yarn", f"{a}.rope.scaling.factor": float(factor)})
        if rope.get("original_max_position_embeddings"):
            meta[f"{a}.rope.scaling.original_context_length"] = int(rope["original_max_position_embeddings"])
        for key in ("beta_fast", "beta_slow"):  # conversion/base.py: rope.scaling.yarn_beta_*
            if rope.get(key) is not None:
                meta[f"{a}.rope.scaling.yarn_{key}"] = float(rope[key])
    elif rope_type in ("su", "longrope") and arch != "phi3":
        meta[f"{a}.rope.scaling.type"] = "longrope"
    if dims["expert"] > 1:
        meta[f"{a}.expert_count"] = dims["expert"]
        meta[f"{a}.expert_used_count"] = dims["used"]
        if cfg.get("moe_intermediate_size"):
            meta[f"{a}.expert_feed_forward_length"] = int(cfg["moe_intermediate_size"])
    for key, gguf_key in (("n_group", "expert_group_count"), ("topk_group", "expert_group_used_count")):
        if cfg.get(key) is not None:  # conversion/base.py, any architecture
            meta[f"{a}.{gguf_key}"] = int(cfg[key])
    if arch in ("llama", "mistral3"):  # conversion/llama.py
        meta[f"{a}.rope.dimension_count"] = dims["rot"]
    elif arch == "phi3":  # conversion/phi.py
        meta[f"{a}.rope.dimension_count"] = dims["rot"]
        meta[f"{a}.rope.scaling.original_context_length"] = int(
            rope.get("original_max_position_embeddings")
            or cfg.get("original_max_position_embeddings")
            or 4096
        )
        meta[f"{a}.attention.sliding_window"] = int(cfg.get("sliding_window") or 0)  # 0 = Phi-4 style
    elif arch == "gemma2":  # conversion/gemma.py
        for key in ("attn_logit_softcapping", "final_logit_softcapping"):
            if cfg.get(key) is not None:
                meta[f"{a}.{key}"] = float(cfg[key])
        meta[f"{a}.attention.sliding_window"] = int(cfg.get("sliding_window") or 0)
    elif arch == "gemma3":
        if cfg.get("final_logit_softcapping"):
            meta[f"{a}.final_logit_softcapping"] = float(cfg["final_logit_softcapping"])
        if cfg.get("sliding_window_pattern") != 1:
            meta[f"{a}.attention.sliding_window"] = int(cfg.get("sliding_window") or 0)
    meta.update(family.metadata(cfg, arch, dims))
    return meta


def header_from_hf_config(config: dict[str, Any], *, dtype: str = "F16") -> GGUFHeader:
    """The GGUF header the converter would write for this ``config.json`` at ``dtype``
    (``F16``, ``BF16``, ``F32`` or ``Q8_0``: the converter's --outtype)."""
    if dtype not in FILE_TYPES:
        raise ValueError(f"dtype must be one of {', '.join(FILE_TYPES)}, not {dtype!r}")
    arch = gguf_arch(config)
    cfg = text_config(config)
    check_config(cfg)
    return GGUFHeader(metadata=_metadata(cfg, arch, dtype), tensors=_tensors(cfg, arch, dtype))

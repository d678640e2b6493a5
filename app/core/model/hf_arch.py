"""Describe a Hugging Face checkpoint as the GGUF that llama.cpp's converter would write from it.

The advisor reads one input format, a GGUF-shaped header (:mod:`app.core.model.gguf_header`). For a
``config.json`` we build that header ourselves: the metadata keys and the full tensor table (names,
ggml-order shapes, types) that ``convert_hf_to_gguf.py`` writes, mirrored from the llama.cpp
vendored in llama-cpp-python 0.3.36 (``conversion/{base,llama,qwen,gemma,phi}.py`` for keys and
types). Which tensors each architecture has are the tables of :mod:`app.core.model.hf_tensors`;
this module sizes them from the config. Hybrids, whose blocks keep a recurrent state instead of a
KV cache (Qwen3.5, LFM2, Granite 4.0-H), add their block kinds and keys in
:mod:`app.core.model.hf_hybrid`.

Two deliberate differences: ``{arch}.vocab_size`` is written for every architecture (the converter
carries the vocabulary size in the tokenizer list, which a config has no room for), and the
vocabulary is ``vocab_size`` rows even where the converter trims Gemma 3's embedding to the
tokenizer's length (the same number for every released Gemma 3).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from app.core.errors import UnsupportedArchitectureError
from app.core.model.gguf_header import GGUFHeader, TensorInfo
from app.core.model.hf_config import CONTEXT_KEYS, bad, check_config, missing, section
from app.core.model.hf_hybrid import (
    HYBRID_DEFAULTS,
    HYBRID_MODEL_TYPES,
    block_kinds,
    hybrid_dims,
    hybrid_metadata,
)
from app.core.model.hf_tensors import ARCH_TENSORS, TensorSpec
from app.core.model.sanity import MAX_HEAD_DIM

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
    **HYBRID_MODEL_TYPES,  # blocks without a KV cache: app.core.model.hf_hybrid
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
    **HYBRID_DEFAULTS,
}  # fmt: skip

# The converter skips lm_head.weight for these (conversion/gemma.py filter_tensors): always tied.
_NO_LM_HEAD = ("gemma", "gemma2")
# general.file_type per converter --outtype (llama.h llama_ftype).
FILE_TYPES: dict[str, int] = {"F32": 0, "F16": 1, "Q8_0": 7, "BF16": 32}
# Tensors the converter always keeps in F32 whatever the outtype (conversion/base.py prepare_tensors).
# Also the convolution kernels (SSM_CONV1D, SHORTCONV_CONV there) and every tensor whose name does
# not end in .weight (ssm_a, ssm_d: no suffix).
_F32_ALWAYS = re.compile(
    r"(\.bias|_norm\.weight|\.ffn_gate_inp(_shexp)?\.weight|^rope_\w+\.weight|\.ssm_conv1d\.weight"
    r"|\.shortconv\.conv\.weight|^blk\.\d+\.ssm_[ad])$"
)


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
    """The GGUF ``general.architecture`` for a config.json; raises for unknown model types."""
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
    n_expert = int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0)
    if n_expert > 1:  # llama.cpp asserts 0 < n_expert_used <= n_expert (llama-model.cpp load_hparams)
        used = cfg.get("num_experts_per_tok")
        if not used:
            raise missing("num_experts_per_tok", used)
        if used > n_expert:
            raise bad("num_experts_per_tok", used, f"more than the {n_expert} experts")
    return {
        "embd": embd, "vocab": _need(cfg, "vocab_size"), "ff": ff, "ff2": 2 * ff,
        "q": n_head * hd, "k": n_kv * hd, "v": n_kv * hd, "hd": hd, "qkv": (n_head + 2 * n_kv) * hd,
        "expert": n_expert, "ff_exp": int(cfg.get("moe_intermediate_size") or ff), "rot_half": rot // 2,
        "n_head": n_head, "n_kv": n_kv, "rot": rot, "q2": 2 * n_head * hd,  # q2: a query and its gate
        **hybrid_dims(cfg, arch, embd),
    }  # fmt: skip


def _features(cfg: dict[str, Any], arch: str) -> set[str]:
    rope, _, _ = _rope(cfg)
    feats: set[str] = set()
    if not cfg.get("tie_word_embeddings", True) and arch not in _NO_LM_HEAD:
        feats.add("untied")
    if arch == "qwen2" or cfg.get("attention_bias"):  # Qwen2 always has q/k/v biases
        feats.add("qkv_bias")
    if cfg.get("attention_bias") and arch == "llama":
        feats.add("o_bias")
    if arch == "llama" and str(rope.get("rope_type", "")).lower() == "llama3":
        feats.add("rope_freqs")
    if arch == "phi3" and rope.get("long_factor"):
        feats.add("longrope")
    return feats


def _layer_is_moe(cfg: dict[str, Any], dims: dict[str, int], bid: int) -> bool:
    if dims["expert"] <= 1:
        return False
    # transformers Qwen3MoeDecoderLayer: dense where listed in mlp_only_layers or off the sparse step.
    step = int(cfg.get("decoder_sparse_step") or 1)
    return bid not in (cfg.get("mlp_only_layers") or []) and (bid + 1) % step == 0


def _tensor_type(name: str, shape: tuple[int, ...], dtype: str) -> str:
    if len(shape) <= 1 or _F32_ALWAYS.search(name):
        return "F32"
    if dtype == "Q8_0" and shape[0] % 32:  # converter: QuantError → F16 (32 = Q8_0 block)
        return "F16"
    return dtype


def _tensors(cfg: dict[str, Any], arch: str, dtype: str) -> tuple[TensorInfo, ...]:
    dims = _dims(cfg, arch)
    feats = _features(cfg, arch)
    glob, block = ARCH_TENSORS[arch]

    def make(spec: TensorSpec, active: set[str], bid: int = 0) -> TensorInfo | None:
        if spec.when and spec.when not in active:
            return None
        shape = tuple(dims[d] for d in spec.shape)
        name = spec.gguf.format(bid=bid)
        return TensorInfo(name, shape, _tensor_type(name, shape, dtype))

    out = [make(s, feats) for s in glob]
    # At most LLAMA_MAX_LAYERS (check_config), plus a hybrid's draft-head blocks.
    for bid, kind in enumerate(block_kinds(cfg, arch)):
        moe = _layer_is_moe(cfg, dims, bid)
        if not (dims["ff_exp"] if moe else dims["ff"]):  # a zero-wide FFN: no such model
            raise missing("moe_intermediate_size" if moe else "intermediate_size", dims["ff"])
        # A draft-head block is an attention block plus its own projection (hf_tensors._NEXTN).
        active = feats | ({"moe"} if moe else {"dense"}) | ({kind, "attn"} if kind == "mtp" else {kind})
        out.extend(make(s, active, bid) for s in block)
    return tuple(t for t in out if t is not None)


def _metadata(cfg: dict[str, Any], arch: str, dtype: str) -> dict[str, Any]:
    dims = _dims(cfg, arch)
    rope, theta, local_theta = _rope(cfg)
    a = arch
    meta: dict[str, Any] = {"general.architecture": arch, "general.file_type": FILE_TYPES[dtype]}
    ctx = next((cfg[k] for k in CONTEXT_KEYS if cfg.get(k)), None)
    meta.update({
        f"{a}.block_count": _need(cfg, "num_hidden_layers"),
        f"{a}.embedding_length": dims["embd"],
        f"{a}.feed_forward_length": dims["ff"],
        f"{a}.attention.head_count": dims["n_head"],
        f"{a}.attention.head_count_kv": dims["n_kv"],
        f"{a}.vocab_size": dims["vocab"],
    })  # fmt: skip
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
    if arch not in _NO_LM_HEAD and theta is not None:  # Gemma(2)Model.set_gguf_parameters: no rope keys
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
    elif rope_type in ("su", "longrope") and arch != "phi3":
        meta[f"{a}.rope.scaling.type"] = "longrope"
    if dims["expert"] > 1:
        meta[f"{a}.expert_count"] = dims["expert"]
        meta[f"{a}.expert_used_count"] = int(cfg.get("num_experts_per_tok") or 0)
        if cfg.get("moe_intermediate_size"):
            meta[f"{a}.expert_feed_forward_length"] = int(cfg["moe_intermediate_size"])
    if arch == "llama":  # conversion/llama.py
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
    meta.update(hybrid_metadata(cfg, arch, dims))
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


@cache
def _name_patterns(arch: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    glob, block = ARCH_TENSORS[arch]
    out = []
    for spec in glob + block:
        if spec.hf is None:
            continue
        pattern = re.escape(spec.hf).replace(r"\{bid\}", r"(?P<bid>\d+)").replace(r"\{xid\}", r"\d+")
        out.append((re.compile(pattern + "$"), spec.gguf))
    return tuple(out)


# Multimodal checkpoints keep the language model under a prefix (older and newer transformers).
_PREFIXES = (("language_model.model.", "model."), ("model.language_model.", "model."),
             ("language_model.lm_head.", "lm_head."), ("model.text_model.", "model."))  # fmt: skip


def gguf_tensor_name(hf_name: str, arch: str) -> str | None:
    """The GGUF tensor a checkpoint tensor becomes (per-expert tensors map to their stacked tensor),
    or None if the converter drops it or we do not know it. ``arch``: GGUF arch or HF model_type."""
    arch = MODEL_TYPES.get(arch, arch)
    if arch not in ARCH_TENSORS:
        raise UnsupportedArchitectureError(f"Unknown architecture {arch!r}.")
    for old, new in _PREFIXES:
        if hf_name.startswith(old):
            hf_name = new + hf_name[len(old) :]
    if arch in _NO_LM_HEAD and hf_name.startswith("lm_head."):
        return None
    for pattern, gguf in _name_patterns(arch):
        m = pattern.match(hf_name)
        if m:
            return gguf.format(bid=m.groupdict().get("bid", ""))
    return None

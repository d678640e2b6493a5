"""Sanity bounds on the hyper-parameters a model header claims.

A GGUF (or a config.json) is written by strangers: a value that is not a whole number, or one far
past any model that exists, is damage, not a big model — and it must be refused before it sizes a
tuple per layer or gets a plan. Each bound is llama.cpp's own limit where it has one, else ours,
well above every published model so that no real one is refused.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import CorruptModelError
from app.core.model.gguf_header import ArrayLength, GGUFHeader

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS, llama.cpp src/llama-hparams.h: load_hparams asserts it
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS, same file
MAX_WIDTH = 1 << 17  # ours: 7x the widest published model (Nemotron-4-340B, 18,432)
MAX_HEADS = 1024  # ours: 8x the most attention heads published (Llama-3.1-405B, DeepSeek-V3: 128)
MAX_HEAD_DIM = 4096  # ours: 7x the widest key llama.cpp reads (DeepSeek's MLA, 576)
MAX_FF = 1 << 20  # ours: 17x the widest feed-forward layer (Falcon-180B, 59,392)
MAX_VOCAB = 1 << 22  # ours: 16x the largest vocabulary (Gemma 3, 262,144)
MAX_CTX = 1 << 27  # ours: 12x the longest trained context (Llama 4 Scout, 10,485,760)
# Recurrent blocks (llama_hparams::n_embd_r / n_embd_s, src/llama-hparams.cpp):
MAX_CONV_KERNEL = 64  # ours: 16x the widest convolution window published (Mamba, Qwen3.5: 4; LFM2: 3)
MAX_SSM_STATE = 4096  # ours: 16x the largest state (Mamba-2 d_state, Qwen3.5 head width: 128-256)
MAX_SSM_EXPAND = 16  # ours: 8x every Mamba release's expansion (2, which llama.cpp's Granite asserts)

_HINT = "The file is damaged, or it is not a model TailorLM can read."


def bad_value(key: str, why: str) -> CorruptModelError:
    return CorruptModelError(f"The model's {key} {why}.", hint=_HINT)


def _shown(value: Any) -> str:
    if isinstance(value, ArrayLength):
        return f"an array of {value.length:,} values"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole(value: Any, key: str, lo: int, hi: int) -> int:
    """``value`` as an int within ``[lo, hi]``; anything else (a float, a string, a list, a bool,
    a number out of range) is one ``CorruptModelError`` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_value(key, f"is {_shown(value)}, not a whole number")
    if not lo <= value <= hi:
        raise bad_value(key, f"is {value:,}, which no model has (expected {lo:,} to {hi:,})")
    return value


def per_layer(value: Any, n_layer: int, key: str, lo: int, hi: int) -> tuple[int, ...]:
    """A per-layer value: one number for every layer, or an array of exactly ``n_layer`` numbers
    (llama_model_loader::get_key_or_arr refuses any other length)."""
    if isinstance(value, list):
        if len(value) != n_layer:
            raise bad_value(key, f"lists {len(value)} layers but the model has {n_layer}")
        return tuple(whole(v, key, lo, hi) for v in value)
    if isinstance(value, ArrayLength):
        raise bad_value(key, f"is {_shown(value)}, too long to be one per layer")
    return (whole(value, key, lo, hi),) * n_layer


def arch_int(header: GGUFHeader, key: str, default: int, lo: int, hi: int) -> int:
    """``{arch}.{key}`` as a bounded int; absent (or None, from a config) is ``default``."""
    value = header.arch_key(key)
    return default if value is None else whole(value, f"{header.architecture}.{key}", lo, hi)

"""Which ggml type llama.cpp gives each tensor when it quantizes a model to a given file type.

A faithful port of ``llama_tensor_get_type`` and its helpers in llama.cpp ``src/llama-quant.cpp``
(the version vendored in llama-cpp-python 0.3.36), for the file types TailorLM offers — the ones
that need no importance matrix. It lets us predict the exact size of a Q5_K_M file that does not
exist yet. Tests check it against the real quantizer (``llama_model_quantize``) tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.core.model import ggml_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of

# ftype → default tensor type (llama_ftype_get_default_type). Ordered from smallest to largest:
# this is the precision ladder the advisor walks.
FTYPE_DEFAULT: dict[str, str] = {
    "Q2_K": "Q2_K",
    "Q3_K_S": "Q3_K",
    "Q3_K_M": "Q3_K",
    "Q3_K_L": "Q3_K",
    "IQ4_XS": "IQ4_XS",
    "Q4_0": "Q4_0",
    "IQ4_NL": "IQ4_NL",
    "Q4_K_S": "Q4_K",
    "Q4_K_M": "Q4_K",
    "Q4_1": "Q4_1",
    "Q5_0": "Q5_0",
    "Q5_K_S": "Q5_K",
    "Q5_1": "Q5_1",
    "Q5_K_M": "Q5_K",
    "Q6_K": "Q6_K",
    "Q8_0": "Q8_0",
    "F16": "F16",
    "BF16": "BF16",
    "F32": "F32",
}
# File types quantized_types also reproduces that are not on the advisor's ladder. MXFP4_MOE is what
# gpt-oss ships in: experts MXFP4, everything else Q8_0 (llama_tensor_get_type_impl).
OTHER_FTYPES: dict[str, str] = {"MXFP4_MOE": "MXFP4"}
# The ladder the advisor offers by default (issue: "Q2_K … Q8_0, F16").
LADDER: tuple[str, ...] = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                           "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16")  # fmt: skip

_FALLBACK = {  # tensor_type_fallback: rows not divisible by the block size
    "IQ4_XS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ2_XS": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL",
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}  # fmt: skip
_FLOAT = {"F32", "F16", "BF16"}
_NO_QUANT_SUBSTR = (  # tensor_allows_quantization: names never quantized
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", ".patch_embd",
    ".patch_merger", ".rel_pos",
)  # fmt: skip


@dataclass(frozen=True)
class _Hparams:
    arch: str
    n_layer: int
    n_gqa: int
    n_expert: int
    is_70b: bool


def _category(name: str) -> str:
    """tensor_get_category: broad roles that the mixes treat differently."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, cat in (
        ("attn_qkv.weight", "attn_qkv"),
        ("attn_kv_b.weight", "attn_kv_b"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if needle in name:
            return cat
    return "other"


def n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: dimensions up to the last one longer than 1 (a (n, 1) tensor is a vector)."""
    return max((i + 1 for i, n in enumerate(shape) if n != 1), default=1)


def allows_quantization(t: TensorInfo) -> bool:
    if n_dims(t.shape) < 2 or not t.name.endswith("weight"):
        return False
    if t.name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in t.name for s in _NO_QUANT_SUBSTR)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _fallback(t: TensorInfo, target: str) -> str:
    ncols = t.shape[0]
    if ncols % ggml_types.block_size(target) == 0:
        return target
    ret = _FALLBACK.get(target, target)
    if ncols % ggml_types.block_size(ret) != 0:
        ret = "F16"  # "must use F16 due to unusual shape"
    return ret


class _Counters:
    def __init__(self, n_attention_wv: int) -> None:
        self.n_attention_wv = n_attention_wv
        self.i_attention_wv = 0
        self.i_ffn_down = 0
        self.i_ffn_gate = 0
        self.i_ffn_up = 0


def _mix_type(hp: _Hparams, qs: _Counters, t: TensorInfo, ftype: str, new: str, tied: bool) -> str:
    """llama_tensor_get_type_impl for the non-imatrix file types."""
    cat = _category(t.name)
    name = t.name

    def layer(counter: int) -> int:
        if hp.n_expert > 1:  # experts are not consecutive: parse the layer from the name
            li = layer_of(name)
            return li if li is not None else counter
        return counter

    if cat == "output" or (tied and cat == "token_embd"):
        nx = t.shape[0]
        if ftype == "MXFP4_MOE" or hp.arch == "falcon" or nx % ggml_types.block_size(new) != 0:
            return "Q8_0"
        return "Q6_K" if new != "Q8_0" else new
    if ftype == "MXFP4_MOE":  # stacked experts (a third dimension) MXFP4, the rest Q8_0
        return "MXFP4" if len(t.shape) > 2 and t.shape[2] > 1 else "Q8_0"
    if cat == "token_embd":
        return new
    if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
        if ftype == "Q2_K":
            new = "Q4_K" if hp.n_gqa >= 4 else "Q3_K"
        elif ftype == "Q3_K_M":
            new = "Q5_K" if qs.i_attention_wv < 2 else "Q4_K"
        elif ftype == "Q3_K_L":
            new = "Q5_K"
        elif ftype in ("IQ4_NL", "IQ4_XS") and hp.n_gqa >= 4:
            new = "Q5_K"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(qs.i_attention_wv, qs.n_attention_wv):
            new = "Q6_K"
        elif ftype == "Q4_K_S" and qs.i_attention_wv < 4:
            new = "Q5_K"
        if hp.is_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if hp.n_expert == 8:
            new = "Q8_0"
        qs.i_attention_wv += 1
        return new
    if cat == "attn_k":
        return "Q8_0" if hp.n_expert == 8 else new
    if cat == "ffn_down":
        i, n = layer(qs.i_ffn_down), hp.n_layer
        if ftype == "Q2_K":
            new = "Q3_K"
        elif ftype == "Q3_K_M":
            new = ("Q5_K" if i < n // 16
                   else "Q4_K" if hp.arch != "falcon" or _use_more_bits(i, n) else "Q3_K")  # fmt: skip
        elif ftype == "Q3_K_L":
            new = "Q4_K" if hp.arch == "falcon" else "Q5_K"
        elif ftype == "Q4_K_M":
            if hp.arch == "falcon":
                new = "Q6_K" if i < n // 16 else "Q5_K" if _use_more_bits(i, n) else "Q4_K"
            elif _use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS"):
            new = "Q5_K"
        elif ftype == "Q5_K_M" and _use_more_bits(i, n):
            new = "Q6_K"
        elif ftype == "Q4_K_S" and hp.arch != "falcon" and i < n // 8:
            new = "Q5_K"
        qs.i_ffn_down += 1
        return new
    if cat == "attn_output":
        if hp.arch != "falcon":
            if hp.n_expert == 8:
                if ftype in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                    new = "Q5_K"
            elif ftype == "Q2_K":
                new = "Q3_K"
            elif ftype == "Q3_K_M":
                new = "Q4_K"
            elif ftype == "Q3_K_L":
                new = "Q5_K"
        elif ftype == "Q3_K_L":
            new = "Q4_K"
        return new
    if cat == "ffn_gate":
        qs.i_ffn_gate += 1
    elif cat == "ffn_up":
        qs.i_ffn_up += 1
    return new


def _sort_key(t: TensorInfo) -> tuple[int, str]:
    # llama_model_loader::weight_name_comparer: by layer (non-layer tensors first), then name.
    li = layer_of(t.name)
    return (-1 if li is None else li, t.name)


def quantized_types(model: ModelInfo, ftype: str) -> dict[str, str]:
    """Tensor name → ggml type in a ``ftype`` file made from this model's full-precision weights."""
    defaults = {**FTYPE_DEFAULT, **OTHER_FTYPES}
    if ftype not in defaults:
        raise ValueError(f"unknown quantization {ftype!r}; choose one of {', '.join(defaults)}")
    default = defaults[ftype]
    tensors = sorted(model.tensors, key=_sort_key)
    tied = not any(_category(t.name) == "output" for t in tensors)
    n_wv = sum(_category(t.name) in ("attn_v", "attn_qkv", "attn_kv_b") for t in tensors)
    heads, heads_kv = model.n_head[0] if model.n_head else 0, model.n_head_kv[0] if model.n_head_kv else 0
    hp = _Hparams(
        arch=model.architecture,
        n_layer=model.n_layer,
        n_gqa=heads // heads_kv if heads_kv else 0,
        n_expert=model.n_expert,
        is_70b=model.architecture == "llama" and model.n_layer == 80,
    )
    qs = _Counters(n_wv)
    out: dict[str, str] = {}
    for t in tensors:
        if not allows_quantization(t):
            # Kept as in the source; a quantized source's 2-D tensors would be requantized, but
            # the tensors that reach this branch (norms, router) are F32 in every converter.
            out[t.name] = t.type_name if t.type_name in _FLOAT else "F32"
            continue
        if default in _FLOAT:
            out[t.name] = default
            continue
        out[t.name] = _fallback(t, _mix_type(hp, qs, t, ftype, default, tied))
    return out


def quantized_tensors(model: ModelInfo, ftype: str) -> tuple[TensorInfo, ...]:
    """The model's tensor table as a ``ftype`` file would have it (offsets not meaningful)."""
    types = quantized_types(model, ftype)
    return tuple(TensorInfo(t.name, t.shape, types[t.name]) for t in model.tensors)


def file_bytes(tensors: Iterable[TensorInfo], alignment: int = 32) -> int:
    """Bytes of the tensor data section: each tensor padded to the GGUF alignment."""
    return sum((t.n_bytes + alignment - 1) // alignment * alignment for t in tensors)


def type_histogram(tensors: Sequence[TensorInfo]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for t in tensors:
        hist[t.type_name] = hist.get(t.type_name, 0) + 1
    return hist

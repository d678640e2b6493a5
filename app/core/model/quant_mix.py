"""llama.cpp's quantization mixes: which ggml type one tensor gets in a given file type.

A port of ``llama_tensor_get_type_impl``, ``tensor_type_fallback``, ``tensor_allows_quantization``
and ``tensor_requires_imatrix`` in llama.cpp ``src/llama-quant.cpp`` (the version vendored in
llama-cpp-python 0.3.36), branch for branch and in the source's order, so a diff against a newer
llama.cpp maps line to line. :mod:`app.core.model.quant_recipe` drives it over a whole model.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import ConversionError
from app.core.model import ggml_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import layer_of

FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
_FALLBACK = {  # tensor_type_fallback: rows not divisible by the block size
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_0": "Q4_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}  # fmt: skip
_NO_QUANT_SUBSTR = (  # tensor_allows_quantization: names never quantized
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
    "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
    "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
    "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
    "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
    "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)  # fmt: skip
_NO_QUANT_GLM5_NEXT = (  # ... and, for glm5-next only, these
    "hc_", "indexer.attn_q_b", "indexer.attn_k", "indexer.proj", "indexer_compressor_gate",
    "indexer_compressor_ape", "ssm_f_a.weight", "ssm_f_b.weight", "ssm_g_a.weight", "ssm_g_b.weight",
    "ssm_beta.weight", "attn_kv_a_mqa.weight", "attn_k_b.weight", "attn_v_b.weight",
)  # fmt: skip
_CATEGORIES = (  # tensor_get_category, after the exact output/token_embd names; first match wins
    ("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"), ("attn_v.weight", "attn_v"),
    ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
    ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down"),
)  # fmt: skip
ATTN_V_LIKE = frozenset({"attn_v", "attn_qkv", "attn_kv_b"})  # category_is_attn_v
# File types whose groups the mix treats alike (the long `ftype == A || ftype == B` tests).
_IQ2_FAMILY = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"})
_OUTPUT_Q5_K = _IQ2_FAMILY | {"IQ3_XXS"}  # output.weight Q5_K instead of Q6_K
_MOE8_ATTN_OUTPUT_Q5_K = frozenset({"Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S",
                                    "Q4_K_M", "IQ3_S", "IQ3_M", "IQ4_XS"})  # fmt: skip
IMATRIX_TENSOR_TYPES = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"})


def category(name: str) -> str:
    """tensor_get_category: broad roles that the mixes treat differently."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    return next((cat for needle, cat in _CATEGORIES if needle in name), "other")


def n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: dimensions up to the last one longer than 1 (a (n, 1) tensor is a vector)."""
    return max((i + 1 for i, n in enumerate(shape) if n != 1), default=1)


def allows_quantization(t: TensorInfo, arch: str = "") -> bool:
    """tensor_allows_quantization (with llama-quantize's defaults: output.weight is quantized)."""
    if n_dims(t.shape) < 2 or not t.name.endswith("weight"):
        return False
    if t.name in ("position_embd.weight", "token_types.weight"):
        return False
    if arch == "glm5-next" and any(s in t.name for s in _NO_QUANT_GLM5_NEXT):
        return False
    return not any(s in t.name for s in _NO_QUANT_SUBSTR)


def requires_imatrix(name: str, new_type: str, ftype: str) -> bool:
    """tensor_requires_imatrix: llama.cpp refuses to make this tensor without an importance matrix."""
    if name in ("token_embd.weight", "per_layer_token_embd.weight", "output.weight"):
        return False
    # K-quants need none, except the Q2_K tensors of a Q2_K_S file.
    return new_type in IMATRIX_TENSOR_TYPES or (new_type == "Q2_K" and ftype == "Q2_K_S")


def fallback(t: TensorInfo, target: str) -> str:
    """tensor_type_fallback: a type whose block divides the row length."""
    ncols = t.shape[0]
    block = ggml_types.block_size(target)
    if ncols % block == 0:
        return target
    if target in _FALLBACK:
        ret = _FALLBACK[target]
    elif block <= 32:
        ret = target  # already a 32-block type: F16 below
    else:
        raise ConversionError(
            f"llama.cpp cannot quantize {t.name} (rows of {ncols:,} values) to {target}: it has no "
            f"smaller-block type to fall back to.",
            hint="Choose another quantization, e.g. Q4_K_M or IQ4_XS.",
        )
    return ret if ncols % ggml_types.block_size(ret) == 0 else "F16"  # "due to unusual shape"


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class MixState:
    """quantize_state_impl: the model's hyper-parameters the mixes read, and their counters."""

    ftype: str
    arch: str
    n_layer: int  # n_layer_all: draft-head blocks included (init_quantize_state_counters)
    n_gqa: int  # of layer 0 (llama_hparams::n_gqa())
    n_expert: int
    is_70b: bool  # llm_type LLM_TYPE_70B
    tied: bool  # no output.weight: token_embd is quantized as the output
    n_attention_wv: int
    has_imatrix: bool = False
    output_type: str | None = None  # llama_model_quantize_params::output_tensor_type
    i_attention_wv: int = 0
    i_ffn_down: int = 0
    i_ffn_gate: int = 0
    i_ffn_up: int = 0

    def layer(self, counter: int, name: str) -> int:
        """layer_info: experts are not consecutive, so an MoE's layer comes from the name."""
        if self.n_expert > 1:
            li = layer_of(name)
            return li if li is not None else counter
        return counter


def mix_type(s: MixState, t: TensorInfo, new: str, cat: str) -> str:
    """llama_tensor_get_type_impl: ``new`` (the file type's default) adjusted for this tensor."""
    name, ftype = t.name, s.ftype
    if (s.arch == "glm5-next" and new not in FLOAT_TYPES
            and any(k in name for k in ("attn_q_a", "attn_q_b", "nextn.eh_proj"))):  # fmt: skip
        return "Q8_0"
    if cat == "output" or (s.tied and cat == "token_embd"):
        if s.output_type is not None:
            return s.output_type
        if ftype == "MXFP4_MOE" or s.arch == "falcon" or t.shape[0] % ggml_types.block_size(new) != 0:
            return "Q8_0"
        if ftype in _OUTPUT_Q5_K:
            return "Q5_K"
        return "Q6_K" if new != "Q8_0" else new
    if ftype == "MXFP4_MOE":  # stacked experts (a third dimension) MXFP4, the rest Q8_0
        experts = len(t.shape) > 2 and t.shape[2] > 1
        if s.arch == "bailingmoe3":  # its MLA projections are 3-D too
            experts = experts and cat in ("ffn_up", "ffn_gate", "ffn_down")
        return "MXFP4" if experts else "Q8_0"
    if cat == "token_embd":
        # (params.token_embedding_type is handled by the caller: it never reaches here)
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if ftype in ("TQ1_0", "TQ2_0", "Q2_0"):
            return "Q4_K"
        return new
    if ftype in _IQ2_FAMILY:
        return _iq2_family(s, new, cat)
    if cat in ATTN_V_LIKE:
        return _attn_v(s, new)
    if cat == "attn_k":
        if s.n_expert == 8:
            return "Q8_0"  # "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, new)
    if cat == "attn_q":
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, new)
    if cat == "ffn_down":
        new = _ffn_down(s, new, s.layer(s.i_ffn_down, name), s.n_layer)
        s.i_ffn_down += 1
        return new
    if cat == "attn_output":
        return _attn_output(s, new)
    # (ATTENTION_QKV's own branch here is unreachable: category_is_attn_v took it above.)
    if cat in ("ffn_gate", "ffn_up"):
        i = s.layer(s.i_ffn_gate if cat == "ffn_gate" else s.i_ffn_up, name)
        if ftype == "IQ3_XS" and s.n_layer // 8 <= i < 7 * s.n_layer // 8:
            new = "IQ3_XXS"
        if cat == "ffn_gate":
            s.i_ffn_gate += 1
        else:
            s.i_ffn_up += 1
    return new


def _iq2_family(s: MixState, new: str, cat: str) -> str:
    """The 1- and 2-bit IQ mixes: attn_v, ffn_down's first eighth and attn_output kept higher."""
    low = "IQ3_S" if s.ftype in ("IQ2_S", "IQ2_M") else "Q2_K"
    if cat in ATTN_V_LIKE:
        new = "Q4_K" if s.n_gqa >= 4 or s.n_expert >= 4 else low
        s.i_attention_wv += 1
    elif s.n_expert == 8 and cat == "attn_k":
        new = "Q4_K"
    elif cat == "ffn_down":
        if s.i_ffn_down < s.n_layer // 8:  # the running count, not the layer, even for MoE
            new = low
        s.i_ffn_down += 1
    elif cat == "attn_output":
        if s.n_expert == 8:
            new = "Q5_K"
        elif s.ftype in ("IQ1_S", "IQ1_M"):
            new = "IQ2_XXS"
        elif s.ftype in ("IQ2_S", "IQ2_M"):
            new = "IQ3_S"
    return new


def _attn_v(s: MixState, new: str) -> str:
    ftype, gqa4, i, n = s.ftype, s.n_gqa >= 4, s.i_attention_wv, s.n_attention_wv
    if ftype == "Q2_K":
        new = "Q4_K" if gqa4 else "Q3_K"
    elif ftype == "Q2_K_S" and gqa4:
        new = "Q4_K"
    elif ftype == "IQ3_XXS":
        new = "Q4_K" if gqa4 else "IQ3_XXS" if s.has_imatrix else "IQ3_S"
    elif ftype in ("IQ3_XS", "IQ3_S") and gqa4:
        new = "Q4_K"
    elif ftype == "IQ3_M":
        new = "Q4_K"
    elif ftype == "Q3_K_M":
        new = "Q5_K" if i < 2 else "Q4_K"
    elif ftype == "Q3_K_L":
        new = "Q5_K"
    elif ftype in ("IQ4_NL", "IQ4_XS") and gqa4:
        new = "Q5_K"
    elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
        new = "Q6_K"
    elif ftype == "Q4_K_S" and i < 4:
        new = "Q5_K"
    if s.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"  # 8 heads share attn_v: more bits for nearly nothing
    if s.n_expert == 8:
        new = "Q8_0"
    s.i_attention_wv += 1
    return new


def _ffn_down(s: MixState, new: str, i: int, n: int) -> str:
    ftype, falcon = s.ftype, s.arch == "falcon"
    if ftype == "Q2_K":
        new = "Q3_K"
    elif ftype == "Q2_K_S":
        if i < n // 8:
            new = "Q4_K"
    elif ftype == "IQ3_XXS" and not s.has_imatrix:
        new = "Q4_K" if i < n // 8 else "Q3_K"
    elif ftype == "Q3_K_M":
        new = "Q5_K" if i < n // 16 else "Q4_K" if not falcon or _use_more_bits(i, n) else "Q3_K"
    elif ftype == "IQ3_M" and (i < n // 8 or (s.n_expert == 8 and _use_more_bits(i, n))):
        new = "Q4_K"
    elif ftype == "Q3_K_L":
        new = "Q4_K" if falcon else "Q5_K"
    elif ftype == "Q4_K_M":
        if falcon:
            new = "Q6_K" if i < n // 16 else "Q5_K" if _use_more_bits(i, n) else "Q4_K"
        elif _use_more_bits(i, n):
            new = "Q6_K"
    elif i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not s.has_imatrix:
        new = "Q5_K"
    elif ftype == "Q5_K_M" and _use_more_bits(i, n):
        new = "Q6_K"
    elif ftype == "Q4_K_S" and not falcon and i < n // 8:
        new = "Q5_K"
    elif ftype in ("Q4_0", "Q5_0") and s.has_imatrix and i < n // 8:
        new = "Q4_1" if ftype == "Q4_0" else "Q5_1"  # "craziness in the first few ffn_down layers"
    return new


def _attn_output(s: MixState, new: str) -> str:
    ftype = s.ftype
    if s.arch == "falcon":
        return "Q4_K" if ftype == "Q3_K_L" else new
    if s.n_expert == 8:
        return "Q5_K" if ftype in _MOE8_ATTN_OUTPUT_Q5_K else new
    return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}.get(
        ftype, new
    )

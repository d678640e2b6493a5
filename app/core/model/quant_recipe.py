"""Which ggml type llama.cpp gives each tensor when it quantizes a model to a given file type.

A faithful port of ``llama_tensor_get_type`` in llama.cpp ``src/llama-quant.cpp`` (the version
vendored in llama-cpp-python 0.3.36) for every file type ``llama-quantize`` offers, with or without
an importance matrix, with ``--tensor-type PATTERN=TYPE`` overrides and ``--output-tensor-type`` /
``--token-embedding-type``; the per-tensor mixes are in :mod:`app.core.model.quant_mix`. It lets us
predict the exact types and size of a file that does not exist yet, header included, and say up
front which file types need an importance matrix. Tests check it against the real quantizer
(``llama_model_quantize``) tensor by tensor and byte by byte.

Overrides are regular expressions searched in the tensor name, the first match winning, as
llama.cpp's ``std::regex_search`` with the ECMAScript grammar does; Python's ``re.search`` agrees on
every ordinary pattern (literals, ``.``, ``|``, classes, ``\\d``, anchors, repeats). Python accepts
more (lookbehind, ``(?P<name>…)``, inline flags) where std::regex would fail, so the quantizer, not
this port, is the judge of such patterns. ``llama-quantize`` lower-cases a pattern before passing
it (quantize.cpp ``parse_tensor_type``); this port takes patterns as llama.cpp receives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import NotAGGUFError
from app.core.model import ggml_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of
from app.core.model.quant_mix import (
    ATTN_V_LIKE,
    FLOAT_TYPES,
    MixState,
    allows_quantization,
    category,
    fallback,
    mix_type,
    n_dims,
)
from app.core.model.quant_mix import requires_imatrix as _tensor_requires_imatrix

if TYPE_CHECKING:
    from app.core.model.imatrix_file import ImatrixKV

__all__ = ["ALL_FTYPES", "FTYPE_DEFAULT", "IMATRIX_FTYPES", "LADDER", "OTHER_FTYPES",
           "allows_quantization", "file_bytes", "gguf_kv_bytes", "imatrix_kv_bytes", "n_dims", "quantized_header_bytes",
           "quantized_tensors", "quantized_types", "requires_imatrix", "type_histogram"]  # fmt: skip

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
# The low-bit file types (llama_ftype_get_default_type): IQ2_S's default is IQ2_XS and IQ2_M's IQ2_S.
_LOW_BIT_FTYPES: dict[str, str] = {
    "Q1_0": "Q1_0", "IQ1_S": "IQ1_S", "TQ1_0": "TQ1_0", "IQ1_M": "IQ1_M", "IQ2_XXS": "IQ2_XXS",
    "TQ2_0": "TQ2_0", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S", "Q2_K_S": "Q2_K",
    "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S", "Q2_0": "Q2_0",
}  # fmt: skip
_DEFAULT_TYPE = {**FTYPE_DEFAULT, **OTHER_FTYPES, **_LOW_BIT_FTYPES}
# Every file type llama-quantize offers (tools/quantize/quantize.cpp QUANT_OPTIONS, without COPY and
# the aliases Q3_K/Q4_K/Q5_K), smallest first by bits per weight (its descriptions and
# app/core/advice/quality.py's table).
ALL_FTYPES: tuple[str, ...] = (
    "Q1_0", "IQ1_S", "TQ1_0", "IQ1_M", "IQ2_XXS", "TQ2_0", "Q2_0", "IQ2_XS", "IQ2_S", "IQ2_M", "Q2_K_S", "Q2_K",
    "IQ3_XXS", "IQ3_XS", "IQ3_S", "Q3_K_S", "IQ3_M", "Q3_K_M", "Q3_K_L", "IQ4_XS", "MXFP4_MOE", "Q4_0",
    "IQ4_NL", "Q4_K_S", "Q4_K_M", "Q4_1", "Q5_0", "Q5_K_S", "Q5_1", "Q5_K_M", "Q6_K", "Q8_0", "F16",
    "BF16", "F32",
)  # fmt: skip
# File types llama.cpp refuses to make without an importance matrix for a model whose rows are
# multiples of 256 (tensor_requires_imatrix on the mix's choices; narrower rows fall back to IQ4_NL,
# which needs none: requires_imatrix() answers for one model). IQ3_XS and IQ3_XXS are in because
# their attn_q/attn_k (and some ffn_gate/ffn_up) are IQ3_XXS or IQ2_S.
IMATRIX_FTYPES = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS",
                            "Q2_K_S"})  # fmt: skip
# The ladder the advisor offers by default (issue: "Q2_K … Q8_0, F16").
LADDER: tuple[str, ...] = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
                           "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16")  # fmt: skip
# Architectures whose llm_type is LLM_TYPE_70B at this many (non-draft) blocks, the only type the
# mixes look at (src/models/llama.cpp, qwen2.cpp, deci.cpp, olmo.cpp, jais2.cpp load_arch_hparams).
_70B_LAYERS = {"llama": 80, "qwen2": 80, "deci": 80, "olmo": 80, "jais2": 68}


def _sort_key(t: TensorInfo) -> tuple[int, str]:
    # llama_model_loader::weight_name_comparer: by layer (non-layer tensors first), then name.
    li = layer_of(t.name)
    return (-1 if li is None else li, t.name)


def _is_70b(model: ModelInfo) -> bool:
    n_layer = model.n_layer - model.n_layer_mtp
    if _70B_LAYERS.get(model.architecture) != n_layer:
        return False
    if model.architecture == "llama":  # 80 blocks with as many KV heads as heads is LLaMA-65B
        return model.n_expert != 8 and model.n_head[:1] != model.n_head_kv[:1]
    return True


def _checked_overrides(overrides: Sequence[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for pattern, type_name in overrides:
        qtype = type_name.upper()
        if not ggml_types.known_type(qtype):
            raise ValueError(f"unknown ggml type {type_name!r} for tensors matching {pattern!r}")
        try:
            out.append((re.compile(pattern), qtype))
        except re.error as exc:
            raise ValueError(f"bad tensor pattern {pattern!r}: {exc}") from None
    return out


def _checked_type(name: str | None, what: str) -> str | None:
    if name is not None and not ggml_types.known_type(name.upper()):
        raise ValueError(f"unknown ggml type {name!r} for the {what}")
    return None if name is None else name.upper()


def quantized_types(
    model: ModelInfo,
    ftype: str,
    *,
    imatrix: bool = False,
    overrides: Sequence[tuple[str, str]] = (),
    output_type: str | None = None,
    token_embedding_type: str | None = None,
) -> dict[str, str]:
    """Tensor name → ggml type in a ``ftype`` file made from this model's full-precision weights.

    ``imatrix``: made with an importance matrix (some mixes differ). ``overrides``: (pattern, type)
    as ``--tensor-type``, tried in order. ``output_type``/``token_embedding_type``: as
    ``--output-tensor-type``/``--token-embedding-type``. Raises ``ValueError`` for an unknown file
    type, ggml type or pattern, ``ConversionError`` where llama.cpp itself would fail (a Q1_0
    tensor whose rows are not multiples of 128).
    """
    if ftype not in _DEFAULT_TYPE:
        raise ValueError(f"unknown quantization {ftype!r}; choose one of {', '.join(ALL_FTYPES)}")
    default = _DEFAULT_TYPE[ftype]
    if not ggml_types.known_type(default):  # a type newer than ggml_types knows
        raise ValueError(f"TailorLM cannot size {default} tensors yet, so it cannot predict a {ftype} file")
    patterns = _checked_overrides(overrides)
    out_type = _checked_type(output_type, "output tensor")
    embd_type = _checked_type(token_embedding_type, "token embeddings")
    tensors = sorted(model.tensors, key=_sort_key)
    cats = {t.name: category(t.name) for t in tensors}
    heads, heads_kv = model.n_head[0] if model.n_head else 0, model.n_head_kv[0] if model.n_head_kv else 0
    state = MixState(
        ftype=ftype,
        arch=model.architecture,
        n_layer=model.n_layer,
        n_gqa=heads // heads_kv if heads_kv else 0,
        n_expert=model.n_expert,
        is_70b=_is_70b(model),
        tied="output" not in cats.values(),
        n_attention_wv=sum(c in ATTN_V_LIKE for c in cats.values()),
        has_imatrix=imatrix,
        output_type=out_type,
    )
    out: dict[str, str] = {}
    for t in tensors:
        cat = cats[t.name]
        if not allows_quantization(t, model.architecture):
            # Kept as in the source; a quantized source's 2-D tensors would be requantized, but
            # the tensors that reach this branch (norms, router) are F32 in every converter.
            out[t.name] = t.type_name if t.type_name in FLOAT_TYPES else "F32"
        elif (
            embd_type is not None
            and cat == "token_embd"
            and not (t.name == "per_layer_token_embd.weight" and any(p.search(t.name) for p, _ in patterns))
        ):
            out[t.name] = embd_type  # as given: no fallback (llama_tensor_get_type)
        elif out_type is not None and cat == "output":
            out[t.name] = out_type
        elif default in FLOAT_TYPES:
            out[t.name] = default
        else:
            manual = next((q for p, q in patterns if p.search(t.name)), None)
            new = manual if manual is not None else mix_type(state, t, default, cat)
            out[t.name] = fallback(t, new)
    return out


def quantized_tensors(
    model: ModelInfo,
    ftype: str,
    *,
    imatrix: bool = False,
    overrides: Sequence[tuple[str, str]] = (),
    output_type: str | None = None,
    token_embedding_type: str | None = None,
) -> tuple[TensorInfo, ...]:
    """The model's tensor table as a ``ftype`` file would have it (offsets not meaningful)."""
    types = quantized_types(model, ftype, imatrix=imatrix, overrides=overrides, output_type=output_type,
                            token_embedding_type=token_embedding_type)  # fmt: skip
    return tuple(TensorInfo(t.name, t.shape, types[t.name]) for t in model.tensors)


def requires_imatrix(
    model: ModelInfo,
    ftype: str,
    overrides: Sequence[tuple[str, str]] = (),
    *,
    output_type: str | None = None,
    token_embedding_type: str | None = None,
) -> list[str]:
    """Tensors llama.cpp would refuse to quantize without an importance matrix ("this quantization
    requires an imatrix!"), in the quantizer's order; empty when none is needed."""
    types = quantized_types(model, ftype, overrides=overrides, output_type=output_type,
                            token_embedding_type=token_embedding_type)  # fmt: skip
    return [
        t.name
        for t in sorted(model.tensors, key=_sort_key)
        if allows_quantization(t, model.architecture)
        and _tensor_requires_imatrix(t.name, types[t.name], ftype)
    ]


def file_bytes(tensors: Iterable[TensorInfo], alignment: int = 32) -> int:
    """Bytes of the tensor data section: each tensor padded to the GGUF alignment."""
    return sum((t.n_bytes + alignment - 1) // alignment * alignment for t in tensors)


def type_histogram(tensors: Sequence[TensorInfo]) -> dict[str, int]:
    hist: dict[str, int] = {}
    for t in tensors:
        hist[t.type_name] = hist.get(t.type_name, 0) + 1
    return hist


# --- the header llama-quantize writes ----------------------------------------------------------

_GGUF_ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT: llama-quantize pads with it whatever the source says
_GGUF_PREAMBLE = 24  # magic, version, tensor count, key count (gguf_write_out)
_U32 = 4
# Keys llama_model_quantize_impl drops from, and sets (as u32) in, the copy of the source's metadata.
_DROPPED_KEYS = ("split.no", "split.count", "split.tensors.count")
_SET_KEYS = ("general.quantization_version", "general.file_type")
_VAL_STR_BYTES = 127  # llama_model_kv_override::val_str is char[128]; quantize.cpp strncpy's 127


def imatrix_kv_bytes(kv: ImatrixKV) -> dict[str, int]:
    """Key → bytes of the entries llama-quantize adds for an importance matrix (quantize.cpp): the
    strings cut as llama.cpp cuts them, the counts written as u32 (an INT override is)."""
    sizes = {"quantize.imatrix.file": 8 + _val_str_bytes(kv.file),
             "quantize.imatrix.entries_count": _U32}  # fmt: skip
    if kv.dataset is not None:
        sizes["quantize.imatrix.dataset"] = 8 + _val_str_bytes(kv.dataset)
    if kv.chunks > 0:
        sizes["quantize.imatrix.chunks_count"] = _U32
    return {k: _entry_bytes(k, n) for k, n in sizes.items()}


def _val_str_bytes(text: str) -> int:
    # strncpy(val_str, s, 127), read back as a C string: at most 127 bytes, up to the first NUL.
    return len(text.encode()[:_VAL_STR_BYTES].split(b"\0", 1)[0])


def _entry_bytes(key: str, value_bytes: int) -> int:
    return 8 + len(key.encode()) + 4 + value_bytes  # key (u64 length + bytes), type, value


def gguf_kv_bytes(path: str | Path) -> dict[str, int]:
    """Key → bytes of its entry in the GGUF at ``path``: what llama-quantize copies to its output.
    Raises ``ModelReadError`` (or a subclass) for a file that is gone or not a GGUF any more."""
    from app.core.model.gguf_cursor import Cursor, damaged
    from app.core.model.gguf_header import GGUF_MAGIC, FileSource

    scalar_bytes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # gguf.md
    string, array = 8, 9
    sizes: dict[str, int] = {}
    with FileSource(path) as src:
        cur = Cursor(src)
        if cur.take(4) != GGUF_MAGIC:
            raise NotAGGUFError(f"{path} is no longer a GGUF file.")
        _, _, n_kv = cur.unpack_all("<IQQ")  # version, tensor count, key count
        for _ in range(n_kv):
            start = cur.pos
            key = cur.string()
            vtype, n = cur.unpack("<I"), 1
            if vtype == array:
                vtype, n = cur.unpack_all("<IQ")
            if vtype == string:
                cur.skip_strings(n)
            elif vtype in scalar_bytes:
                cur.skip(n * scalar_bytes[vtype])
            else:
                raise damaged(f"{key!r} has the unknown value type {vtype}")
            sizes[key] = cur.pos - start
    return sizes


def quantized_header_bytes(
    source_kv: dict[str, int], tensors: Iterable[TensorInfo], imatrix: ImatrixKV | None = None
) -> int:
    """Bytes before the tensor data in the file llama-quantize writes: the source's key/values
    (``gguf_kv_bytes``) with split keys dropped, file type and quantization version set and the
    imatrix keys added, then the table of ``tensors``, padded to the alignment
    (llama_model_quantize_impl, gguf_write_out)."""
    kv = {k: v for k, v in source_kv.items() if k not in _DROPPED_KEYS}
    kv.update({k: _entry_bytes(k, _U32) for k in _SET_KEYS})
    if imatrix is not None:
        kv.update(imatrix_kv_bytes(imatrix))
    # Each row: name, n_dims (ggml_n_dims: trailing 1s dropped), the dims, type, offset.
    table = sum(8 + len(t.name.encode()) + 4 + 8 * n_dims(t.shape) + 4 + 8 for t in tensors)
    raw = _GGUF_PREAMBLE + sum(kv.values()) + table
    return -(-raw // _GGUF_ALIGNMENT) * _GGUF_ALIGNMENT

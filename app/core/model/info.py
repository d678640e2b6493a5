"""One description of a model, whatever it came from: a GGUF file, an HF checkpoint, a repo, the catalog.

Everything is reduced to a GGUF-shaped header (metadata keys + tensor table, see
:mod:`app.core.model.gguf_header`), so the estimator has one input format; this module derives the
hyper-parameters the estimator and the advisor need from it, the way llama.cpp's
``llama_model::load_hparams`` does (``src/llama-model.cpp``, ``src/models/*.cpp``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.core.errors import CorruptModelError, UnsupportedArchitectureError
from app.core.model import sanity
from app.core.model.gguf_header import ArrayLength, GGUFHeader, TensorInfo
from app.core.model.recurrent_layers import RecurrentShape, recurrence, recurrent_shape

# Architectures whose sliding-window layers follow a fixed pattern unless the file says otherwise:
# the second argument of `load_swa_pattern(ml, n, dense_first)` in llama.cpp src/models/<arch>.cpp.
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "llama4": (4, False),
    "olmo2": (4, False),
    "exaone4": (4, False),
    "gpt-oss": (2, False),  # llama.cpp calls this arch openai-moe internally
    "smallthinker": (4, True),
}
# Gemma 2 files may omit the window: llama.cpp src/models/gemma2.cpp defaults it to 4096.
DEFAULT_SWA = {"gemma2": 4096}

# general.file_type values (llama.h `llama_ftype`) → the names users see in file names.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 40: "Q1_0", 41: "Q2_0",
}  # fmt: skip

# The last attention.shared_kv_layers layers reuse earlier layers' KV cache and keep none of their
# own (llama_hparams::n_layer_kv_from_start, src/models/gemma4.cpp; has_kv in llama-hparams.cpp).
KV_SHARING_ARCHS = frozenset({"gemma4"})
# Multi-head latent attention: with both keys set llama.cpp caches only K, the compressed latent
# (llama_hparams::is_mla; llama-kv-cache.cpp: has_v = !is_mla), as DeepSeek-V2/V3 and GLM-4.7-Flash.
_MLA_KEYS = ("attention.key_length_mla", "attention.value_length_mla")

_BLK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class ModelInfo:
    """Shapes and hyper-parameters of one model, plus its tensor table."""

    name: str
    source: str  # the path, repo id or catalog id the user gave
    source_kind: str  # "gguf" | "hf_dir" | "hf_repo" | "catalog"
    architecture: str
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]  # per layer
    n_head_kv: tuple[int, ...]  # per layer; 0 = the layer keeps no KV cache
    head_dim_k: int  # a full-attention layer's key head width (n_embd_head_k)
    head_dim_v: int  # its cached value head width; 0 with MLA, which caches no V (see _MLA_KEYS)
    n_ff: int  # the largest dense FFN width (0 for pure-MoE layers)
    n_vocab: int
    n_ctx_train: int
    sliding_window: int  # 0 = no sliding-window attention
    swa_layers: tuple[bool, ...]  # per layer: True = sliding-window layer
    n_expert: int
    n_expert_used: int
    n_ff_expert: int
    tied_embeddings: bool
    file_type: str | None  # "Q4_K_M" for a quantized GGUF, "BF16"/"F16" for a checkpoint
    tensors: tuple[TensorInfo, ...]
    file_size_bytes: int | None = None
    metadata: dict[str, Any] | None = None
    # Where the tensor data starts in the file (tensor offsets count from there); None when the
    # tensors are not in one file at known places (split parts, a checkpoint, a prediction).
    data_offset_bytes: int | None = None
    # Per layer, True where llama.cpp keeps a recurrent state per sequence (llama_memory_recurrent);
    # () = no such layer. Each holds conv_state_elements + ssm_state_elements F32 values per
    # sequence, whatever the context; it has n_head_kv 0 unless it attends too (Falcon-H1).
    recurrent_layers: tuple[bool, ...] = ()
    recurrent: RecurrentShape | None = None
    # Draft-head (multi-token prediction) blocks at the end, counted in n_layer: llama.cpp gives them
    # no cache and loads their weights only for a draft context (nextn_predict_layers, TENSOR_SKIP).
    n_layer_mtp: int = 0
    # Sliding-window layers' head widths where they differ from the full layers' (Gemma 4:
    # attention.key_length_swa, read for every architecture by llama_model::load_hparams); None = the same.
    head_dim_k_swa: int | None = None
    head_dim_v_swa: int | None = None

    @property
    def n_params(self) -> int:
        """Parameters counted from the tensor table (a tied embedding counts once)."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def weight_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 1

    @property
    def has_swa(self) -> bool:
        return self.sliding_window > 0 and any(self.swa_layers)

    @property
    def has_recurrent(self) -> bool:
        return any(self.recurrent_layers)

    def is_recurrent(self, il: int) -> bool:
        return il < len(self.recurrent_layers) and self.recurrent_layers[il]

    def kv_widths(self, il: int) -> tuple[int, int]:
        """(K, V) elements per cell that layer ``il`` caches: llama_hparams::n_embd_k_gqa(il) and
        n_embd_v_gqa(il), 0 for a layer without a KV cache of its own."""
        n_kv, swa = self.n_head_kv[il], self.swa_layers[il]
        hd_k = self.head_dim_k_swa if swa and self.head_dim_k_swa is not None else self.head_dim_k
        hd_v = self.head_dim_v_swa if swa and self.head_dim_v_swa is not None else self.head_dim_v
        return n_kv * hd_k, n_kv * hd_v

    @property
    def conv_state_elements(self) -> int:
        return self.recurrent.conv_state_elements if self.recurrent else 0

    @property
    def ssm_state_elements(self) -> int:
        return self.recurrent.ssm_state_elements if self.recurrent else 0


def layer_of(tensor_name: str) -> int | None:
    """``blk.12.attn_q.weight`` → 12; non-repeating tensors (embeddings, output) → None."""
    m = _BLK.match(tensor_name)
    return int(m.group(1)) if m else None


def _swa_layers(header: GGUFHeader, arch: str, n_layer: int, n_swa: int) -> tuple[bool, ...]:
    if n_swa <= 0:
        return (False,) * n_layer
    pattern = header.arch_key("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        return tuple(bool(v) for v in pattern)  # explicit per-layer flags win (load_swa_pattern)
    n_pattern, dense_first = SWA_PATTERNS.get(arch, (0, False))
    if isinstance(pattern, int):
        n_pattern = pattern
    if arch not in SWA_PATTERNS and not isinstance(pattern, int):
        # Mistral-style: every layer slides (llama.cpp treats n_pattern 0 as "all SWA"), but
        # llama.cpp ignores the window for most such archs (phi3 disables it explicitly);
        # count them as full attention, which is what llama.cpp allocates.
        return (False,) * n_layer
    # llama_hparams::set_swa_pattern (src/llama-hparams.cpp)
    if dense_first:
        return tuple(n_pattern == 0 or il % n_pattern != 0 for il in range(n_layer))
    return tuple(n_pattern == 0 or il % n_pattern < n_pattern - 1 for il in range(n_layer))


def _file_type(header: GGUFHeader) -> str | None:
    ft = header.metadata.get("general.file_type")
    if isinstance(ft, int):
        return FILE_TYPES.get(ft & ~1024, f"type {ft}")  # 1024 = LLAMA_FTYPE_GUESSED
    return None


def _arch_layers(header: GGUFHeader, key: str, default: Any, n_layer: int, hi: int) -> tuple[int, ...]:
    value = header.arch_key(key, default)
    return sanity.per_layer(value, n_layer, f"{header.architecture}.{key}", 0, hi)


def _n_tokens(header: GGUFHeader) -> int | None:
    """The tokenizer's token count (llama_vocab::n_tokens), when the header lists tokens."""
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArrayLength):
        return tokens.length
    return len(tokens) if isinstance(tokens, list) else None


def _n_vocab(header: GGUFHeader) -> int:
    if header.arch_key("vocab_size") is not None:
        return sanity.arch_int(header, "vocab_size", 0, 1, sanity.MAX_VOCAB)
    n = _n_tokens(header)
    if n is None:
        embd = next((t for t in header.tensors if t.name == "token_embd.weight"), None)
        n = embd.shape[1] if embd is not None and len(embd.shape) > 1 else 0
    return sanity.whole(n, "vocabulary size", 1, sanity.MAX_VOCAB)


def _check_tensors(header: GGUFHeader, n_layer: int, n_embd: int, n_vocab: int) -> None:
    """The tensor table must fit the hyper-parameters the way llama.cpp's create_tensor checks
    (src/llama-model.cpp: ``{n_embd, n_vocab}`` embeddings, ``blk.N`` for N < n_layer)."""
    if not header.tensors:
        raise sanity.bad_value("tensor table", "is empty")
    arch = header.architecture
    rows = _n_tokens(header) or n_vocab  # llama.cpp sizes it by vocab.n_tokens(), else the vocab size
    for t in header.tensors:
        il = layer_of(t.name)
        if il is not None and il >= n_layer:
            raise sanity.bad_value(f"{arch}.block_count", f"is {n_layer}, but it has a tensor {t.name!r}")
        if not t.n_elements:  # every shape llama.cpp's create_tensor expects is made of hparams > 0
            raise sanity.bad_value(f"tensor {t.name!r}", f"has the empty shape {list(t.shape)}")
        if t.name == "token_embd.weight" and t.shape and t.shape[0] != n_embd:
            raise sanity.bad_value(
                f"{arch}.embedding_length", f"is {n_embd:,}, but its token embedding is {t.shape[0]:,} wide"
            )
        if t.name == "token_embd.weight" and len(t.shape) > 1 and t.shape[1] != rows:
            raise sanity.bad_value(
                "vocabulary", f"has {rows:,} tokens, but its token embedding has {t.shape[1]:,} rows"
            )


def model_info_from_header(
    header: GGUFHeader, *, source: str, source_kind: str, name: str | None = None
) -> ModelInfo:
    """Derive a :class:`ModelInfo` from a GGUF-shaped header; values no model can have (see
    :mod:`app.core.model.sanity`) are one ``CorruptModelError`` naming the key."""
    arch = header.metadata.get("general.architecture")
    if not arch:
        raise CorruptModelError("The model has no general.architecture key.")
    if not isinstance(arch, str):
        raise sanity.bad_value("general.architecture", "is not a name")
    if header.arch_key("block_count") is None or header.arch_key("embedding_length") is None:
        raise UnsupportedArchitectureError(
            f"The {arch!r} model does not say how many layers or how wide it is "
            f"({arch}.block_count / {arch}.embedding_length).",
            hint="Only text-generation models are supported.",
        )
    n_layer = sanity.arch_int(header, "block_count", 0, 1, sanity.MAX_LAYERS)
    n_embd = sanity.arch_int(header, "embedding_length", 0, 1, sanity.MAX_WIDTH)
    heads = _arch_layers(header, "attention.head_count", 0, n_layer, sanity.MAX_HEADS)
    max_heads = max(heads)
    if not max_heads and any(".attn_q" in t.name for t in header.tensors):  # SSMs have no heads
        raise sanity.bad_value(
            f"{arch}.attention.head_count", "is 0 in every layer, yet it has attention tensors"
        )
    heads_kv = _arch_layers(header, "attention.head_count_kv", list(heads), n_layer, sanity.MAX_HEADS)
    for il, (n_head, n_kv) in enumerate(zip(heads, heads_kv, strict=True)):
        # Each KV head serves a whole group of query heads (ggml_mul_mat broadcasts over them).
        if n_kv > n_head or (n_kv and n_head % n_kv):
            raise sanity.bad_value(
                f"{arch}.attention.head_count_kv",
                f"is {n_kv} in layer {il}, which does not divide its {n_head} heads",
            )
    n_mtp = sanity.arch_int(header, "nextn_predict_layers", 0, 0, n_layer)
    ffs = _arch_layers(header, "feed_forward_length", 0, n_layer, sanity.MAX_FF)
    recurrent, heads_kv = recurrence(header, n_layer, n_mtp, heads_kv, ffs)
    if arch in KV_SHARING_ARCHS:
        shared = sanity.arch_int(header, "attention.shared_kv_layers", 0, 0, n_layer)
        heads_kv = tuple(0 if il >= n_layer - shared else n for il, n in enumerate(heads_kv))
    shape = recurrent_shape(header, n_embd) if any(recurrent) else None
    default_hd = n_embd // max_heads if max_heads else 0
    head_dim_k = sanity.arch_int(header, "attention.key_length", default_hd, 0, sanity.MAX_HEAD_DIM)
    head_dim_v = sanity.arch_int(header, "attention.value_length", default_hd, 0, sanity.MAX_HEAD_DIM)
    if max_heads and not (head_dim_k and head_dim_v):
        raise sanity.bad_value(f"{arch}.attention.key_length", "leaves the attention heads 0 wide")
    swa_k = sanity.arch_int(header, "attention.key_length_swa", head_dim_k, 1, sanity.MAX_HEAD_DIM)
    swa_v = sanity.arch_int(header, "attention.value_length_swa", head_dim_v, 1, sanity.MAX_HEAD_DIM)
    if all(sanity.arch_int(header, key, 0, 0, sanity.MAX_HEAD_DIM) for key in _MLA_KEYS):
        head_dim_v = swa_v = 0  # the V cache is not allocated
    n_ff = max(ffs)
    n_vocab = _n_vocab(header)
    _check_tensors(header, n_layer, n_embd, n_vocab)

    n_swa = sanity.arch_int(header, "attention.sliding_window", DEFAULT_SWA.get(arch, 0), 0, sanity.MAX_CTX)
    if isinstance(header.arch_key("attention.sliding_window_pattern"), int):
        sanity.arch_int(header, "attention.sliding_window_pattern", 0, 0, sanity.MAX_LAYERS)
    swa = _swa_layers(header, arch, n_layer, n_swa)
    if not any(swa):
        n_swa = 0
    n_expert = sanity.arch_int(header, "expert_count", 0, 0, sanity.MAX_EXPERTS)
    # llama.cpp load_hparams: 0 < n_expert_used <= n_expert with experts, none without.
    n_expert_used = max(_arch_layers(header, "expert_used_count", 0, n_layer, n_expert))
    if n_expert and not n_expert_used:
        raise sanity.bad_value(f"{arch}.expert_used_count", f"is 0 with {n_expert} experts")

    return ModelInfo(
        name=name or str(header.metadata.get("general.name") or source),
        source=source,
        source_kind=source_kind,
        architecture=arch,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=heads,
        n_head_kv=heads_kv,
        head_dim_k=head_dim_k,
        head_dim_v=head_dim_v,
        n_ff=n_ff,
        n_vocab=n_vocab,
        n_ctx_train=sanity.arch_int(header, "context_length", 0, 0, sanity.MAX_CTX),
        sliding_window=n_swa,
        swa_layers=swa,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        n_ff_expert=sanity.arch_int(header, "expert_feed_forward_length", 0, 0, sanity.MAX_FF),
        tied_embeddings="output.weight" not in {t.name for t in header.tensors},
        file_type=_file_type(header),
        tensors=header.tensors,
        file_size_bytes=header.file_size_bytes,
        metadata={k: v for k, v in header.metadata.items() if not k.startswith("tokenizer.")},
        recurrent_layers=recurrent,
        recurrent=shape,
        n_layer_mtp=n_mtp,
        head_dim_k_swa=swa_k if swa_k != head_dim_k else None,
        head_dim_v_swa=swa_v if swa_v != head_dim_v else None,
    )

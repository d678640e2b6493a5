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

# Which layers keep a recurrent state instead of a KV cache, per architecture, as load_hparams marks
# them (src/models/<arch>.cpp) and llama_model::create_memory filters them (src/llama-model.cpp):
# "every": all of them (llm_arch_is_recurrent); "every+kv": all, and all attend too (Falcon-H1 runs
# both side by side); "no_kv": those whose head_count_kv is 0; "no_kv_no_ff": those with neither KV
# heads nor an FFN (Nemotron-H: attention layers have no FFN either); "listed": the
# attention.recurrent_layers flags, else all but every full_attention_interval-th layer.
RECURRENT_RULES: dict[str, str] = {
    "mamba": "every", "mamba2": "every", "falcon-h1": "every+kv",
    "jamba": "no_kv", "granitehybrid": "no_kv", "lfm2": "no_kv", "lfm2moe": "no_kv",
    "nemotron_h": "no_kv_no_ff", "nemotron_h_moe": "no_kv_no_ff",
    "qwen3next": "listed", "qwen35": "listed", "qwen35moe": "listed",
}  # fmt: skip
FULL_ATTENTION_INTERVAL = 4  # llama.cpp src/models/qwen35.cpp (and qwen3next, qwen35moe) when absent
# What the recurrent layers compute (their graphs: src/models/{lfm2,mamba-base,delta-net-base}.cpp);
# every other architecture above runs Mamba-2. Mamba-1 and Jamba have no groups (their
# load_hparams does not read ssm.group_count).
RECURRENT_KINDS: dict[str, str] = {
    "lfm2": "shortconv", "lfm2moe": "shortconv", "mamba": "mamba", "jamba": "mamba",
    "qwen3next": "gated_delta_net", "qwen35": "gated_delta_net", "qwen35moe": "gated_delta_net",
}  # fmt: skip

# general.file_type values (llama.h `llama_ftype`) → the names users see in file names.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}  # fmt: skip

_BLK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class RecurrentShape:
    """What each recurrent layer keeps per sequence and computes with (llama_hparams' ssm_* keys,
    or n_shortconv_l_cache for a short convolution)."""

    kind: str  # "shortconv" (LFM2) | "mamba" (Mamba-1, Jamba) | "mamba2" | "gated_delta_net" (Qwen3.5)
    conv_kernel: int  # d_conv, or the short convolution's l_cache
    conv_channels: int  # what the convolution runs over: n_embd, or d_inner + 2·groups·d_state
    inner: int = 0  # d_inner: the SSM's width, or the delta net's value width
    state: int = 0  # d_state, or the delta net's key head width
    groups: int = 0
    heads: int = 0  # time_step_rank: SSM heads, or the delta net's value heads

    @property
    def conv_state_elements(self) -> int:
        """llama_hparams::n_embd_r: the convolution's last d_conv - 1 inputs (src/llama-hparams.cpp)."""
        return max(self.conv_kernel - 1, 0) * self.conv_channels

    @property
    def ssm_state_elements(self) -> int:
        """llama_hparams::n_embd_s: the SSM (or delta-rule) state matrix."""
        return self.state * self.inner


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
    head_dim_k: int
    head_dim_v: int
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


def _flags(header: GGUFHeader, key: str, n_layer: int) -> tuple[bool, ...] | None:
    """A per-layer array of booleans (get_key_or_arr: exactly one per layer), or None if absent."""
    value = header.arch_key(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n_layer or not all(isinstance(v, bool) for v in value):
        raise sanity.bad_value(f"{header.architecture}.{key}", f"is not {n_layer} true/false flags")
    return tuple(value)


def _required(header: GGUFHeader, key: str, lo: int, hi: int) -> int:
    if header.arch_key(key) is None:
        raise sanity.bad_value(f"{header.architecture}.{key}", "is missing, which this architecture needs")
    return _arch_int(header, key, 0, lo, hi)


def _recurrent_shape(header: GGUFHeader, n_embd: int) -> RecurrentShape:
    """The recurrent layers' shape from the keys their load_hparams requires (get_key, no default)."""
    arch = header.architecture
    kind = RECURRENT_KINDS.get(arch, "mamba2")
    if kind == "shortconv":
        return RecurrentShape(kind, _required(header, "shortconv.l_cache", 1, sanity.MAX_CONV_KERNEL), n_embd)
    d_conv = _required(header, "ssm.conv_kernel", 0, sanity.MAX_CONV_KERNEL)
    inner = _required(header, "ssm.inner_size", 0, sanity.MAX_FF)
    state = _required(header, "ssm.state_size", 0, sanity.MAX_SSM_STATE)
    heads = _required(header, "ssm.time_step_rank", 0, sanity.MAX_WIDTH)
    groups = 0 if kind == "mamba" else _required(header, "ssm.group_count", 0, sanity.MAX_HEADS)
    return RecurrentShape(kind, d_conv, inner + 2 * groups * state, inner, state, groups, heads)


def _recurrence(
    header: GGUFHeader, n_layer: int, n_mtp: int, heads_kv: tuple[int, ...], ffs: tuple[int, ...]
) -> tuple[tuple[bool, ...], tuple[int, ...]]:
    """(recurrent layers, KV heads where a layer keeps a KV cache, else 0), as llama.cpp's
    create_memory filters them; draft-head blocks (il >= trunk) get neither in the main context."""
    trunk, rule, layers = n_layer - n_mtp, RECURRENT_RULES.get(header.architecture), range(n_layer)
    if rule is None:
        return (), tuple(n if il < trunk else 0 for il, n in enumerate(heads_kv))
    if rule == "listed":
        flags = _flags(header, "attention.recurrent_layers", n_layer)
        if flags is None:
            every = _arch_int(
                header, "full_attention_interval", FULL_ATTENTION_INTERVAL, 1, sanity.MAX_LAYERS
            )
            flags = tuple((il + 1) % every != 0 for il in layers)
    else:  # "every", "every+kv", "no_kv", "no_kv_no_ff"
        flags = tuple(rule.startswith("every") or (heads_kv[il] == 0 and (rule == "no_kv" or ffs[il] == 0))
                      for il in layers)  # fmt: skip
    recr = tuple(il < trunk and flags[il] for il in layers)
    attends = {
        "every": [False] * n_layer,
        "every+kv": [True] * n_layer,
        "no_kv": [not r for r in recr],  # create_memory's default filter: !is_recr(il)
        "no_kv_no_ff": [not recr[il] and ffs[il] == 0 for il in layers],
        "listed": [il < trunk and not recr[il] for il in layers],
    }[rule]
    return recr, tuple(n if a else 0 for n, a in zip(heads_kv, attends, strict=True))


def _file_type(header: GGUFHeader) -> str | None:
    ft = header.metadata.get("general.file_type")
    if isinstance(ft, int):
        return FILE_TYPES.get(ft & ~1024, f"type {ft}")  # 1024 = LLAMA_FTYPE_GUESSED
    return None


def _arch_int(header: GGUFHeader, key: str, default: int, lo: int, hi: int) -> int:
    """``{arch}.{key}`` as a bounded int; absent (or None, from a config) is ``default``."""
    value = header.arch_key(key)
    return default if value is None else sanity.whole(value, f"{header.architecture}.{key}", lo, hi)


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
        return _arch_int(header, "vocab_size", 0, 1, sanity.MAX_VOCAB)
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
    n_layer = _arch_int(header, "block_count", 0, 1, sanity.MAX_LAYERS)
    n_embd = _arch_int(header, "embedding_length", 0, 1, sanity.MAX_WIDTH)
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
    n_mtp = _arch_int(header, "nextn_predict_layers", 0, 0, n_layer)
    ffs = _arch_layers(header, "feed_forward_length", 0, n_layer, sanity.MAX_FF)
    recurrent, heads_kv = _recurrence(header, n_layer, n_mtp, heads_kv, ffs)
    shape = _recurrent_shape(header, n_embd) if any(recurrent) else None
    default_hd = n_embd // max_heads if max_heads else 0
    head_dim_k = _arch_int(header, "attention.key_length", default_hd, 0, sanity.MAX_HEAD_DIM)
    head_dim_v = _arch_int(header, "attention.value_length", default_hd, 0, sanity.MAX_HEAD_DIM)
    if max_heads and not (head_dim_k and head_dim_v):
        raise sanity.bad_value(f"{arch}.attention.key_length", "leaves the attention heads 0 wide")
    n_ff = max(ffs)
    n_vocab = _n_vocab(header)
    _check_tensors(header, n_layer, n_embd, n_vocab)

    n_swa = _arch_int(header, "attention.sliding_window", DEFAULT_SWA.get(arch, 0), 0, sanity.MAX_CTX)
    if isinstance(header.arch_key("attention.sliding_window_pattern"), int):
        _arch_int(header, "attention.sliding_window_pattern", 0, 0, sanity.MAX_LAYERS)
    swa = _swa_layers(header, arch, n_layer, n_swa)
    if not any(swa):
        n_swa = 0
    n_expert = _arch_int(header, "expert_count", 0, 0, sanity.MAX_EXPERTS)
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
        n_ctx_train=_arch_int(header, "context_length", 0, 0, sanity.MAX_CTX),
        sliding_window=n_swa,
        swa_layers=swa,
        n_expert=n_expert,
        n_expert_used=n_expert_used,
        n_ff_expert=_arch_int(header, "expert_feed_forward_length", 0, 0, sanity.MAX_FF),
        tied_embeddings="output.weight" not in {t.name for t in header.tensors},
        file_type=_file_type(header),
        tensors=header.tensors,
        file_size_bytes=header.file_size_bytes,
        metadata={k: v for k, v in header.metadata.items() if not k.startswith("tokenizer.")},
        recurrent_layers=recurrent,
        recurrent=shape,
        n_layer_mtp=n_mtp,
    )

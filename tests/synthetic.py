"""Synthetic GGUF models with the exact shapes of real ones, for tests and benchmarks.

``write_synthetic_gguf`` writes the metadata and tensor table that
:func:`app.core.model.hf_arch.header_from_hf_config` gives for a Hugging Face ``config.json``, random
weights (norms 1.0) and a made-up SentencePiece vocabulary of the model's real size, so llama.cpp
loads it and generates from it exactly as it would from the real model, minus the quality.
Weights are streamed from one small pre-generated pool, so memory stays flat whatever the size
(measured on 2 cores: Llama-3.2-1B's 2.47 GB F16 in 3.4-9 s, disk-bound, at ~100 MB peak RSS).
With ``sparse=True`` the tensor data is left as a hole (the file is cut to its full length without
writing it): zero bytes are valid data for every ggml type, and llama.cpp's dry run sizes every
buffer without reading a weight, so a model of any size costs its header on disk.
``quantize_gguf`` runs llama.cpp's quantizer on such a file.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, BinaryIO

import gguf
import numpy as np

from app.core.model.gguf_header import GGUFHeader, TensorInfo
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.info import layer_of

POOL_ELEMENTS = 1 << 22  # 4 Mi values: 8 MB of F16, the most any write holds in memory
WEIGHT_STD = 0.02  # a typical init scale (HF initializer_range); keeps logits finite in F16
DTYPES: dict[str, tuple[Any, gguf.GGMLQuantizationType]] = {
    "F32": (np.float32, gguf.GGMLQuantizationType.F32),
    "F16": (np.float16, gguf.GGMLQuantizationType.F16),
    "BF16": (np.uint16, gguf.GGMLQuantizationType.BF16),  # numpy has no bfloat16: raw bit patterns
}
# Tensors the converter writes in a quantized type whatever the --outtype (gpt-oss's MXFP4 experts) are
# written as zero blocks, which dequantize to zeros (a zero scale), not as random values.
# SentencePiece token types (gguf.TokenType / llama.h llama_token_type).
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
# Metadata arrays with one value per block (llama_model_loader::get_key_or_arr in load_hparams).
_PER_LAYER_KEYS = ("attention.head_count", "attention.head_count_kv", "feed_forward_length",
                   "attention.recurrent_layers", "attention.sliding_window_pattern", "expert_used_count")  # fmt: skip
_SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2: unknown, bos, eos
_WORDS = ("the", "of", "and", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on", "are", "as",
          "with", "his", "they", "at", "be", "this", "have", "from")  # fmt: skip


class _Pool:
    """Normal(0, WEIGHT_STD) values in every float type, generated once per write."""

    def __init__(self, seed: int) -> None:
        values = np.random.default_rng(seed).standard_normal(POOL_ELEMENTS, dtype=np.float32) * WEIGHT_STD
        self.by_type = {
            "F32": values,
            "F16": values.astype(np.float16),
            # bfloat16 is the top half of a float32 (truncation is fine for random weights).
            "BF16": (values.view(np.uint32) >> 16).astype(np.uint16),
        }


class _StreamedTensor:
    """Quacks like the ndarray ``GGUFWriter.write_tensor_data`` expects (``nbytes``, ``tofile``) but
    writes the pool cyclically from an offset, so no tensor is ever materialized."""

    def __init__(self, values: np.ndarray[Any, Any], n_elements: int, start: int) -> None:
        self.values, self.n_elements, self.start = values, n_elements, start
        self.nbytes = n_elements * values.itemsize

    def tofile(self, fout: BinaryIO) -> None:
        left, pos = self.n_elements, self.start
        while left:
            chunk = self.values[pos : pos + left]
            fout.write(chunk.data)  # no copy: the slice is contiguous
            left -= len(chunk)
            pos = 0


class _Zeros:
    """``nbytes`` zero bytes, written in chunks (the ndarray interface of ``_StreamedTensor``)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def tofile(self, fout: BinaryIO) -> None:
        chunk = bytes(min(self.nbytes, 1 << 22))
        for start in range(0, self.nbytes, len(chunk) or 1):
            fout.write(chunk[: self.nbytes - start])


def _constant(value: float, n: int, type_name: str) -> np.ndarray[Any, Any]:
    if type_name == "F32":
        return np.full(n, value, np.float32)
    if type_name == "F16":
        return np.full(n, value, np.float16)
    raise ValueError(f"no constant tensors of type {type_name}")


def _tensor_data(t: TensorInfo, pool: _Pool, rng: np.random.Generator) -> Any:
    if t.type_name not in DTYPES:
        return _Zeros(t.n_bytes)
    if t.name.endswith(".bias"):
        return _constant(0.0, t.n_elements, t.type_name)
    if t.name.endswith(".ssm_a"):  # A = -exp(A_log) < 0 (the converter's), so states decay
        return _constant(-1.0, t.n_elements, t.type_name)
    if t.name.endswith(".ssm_d"):  # the SSM's skip connection
        return _constant(1.0, t.n_elements, t.type_name)
    if len(t.shape) == 1:  # norms and rope factors: 1.0 is the identity
        return _constant(1.0, t.n_elements, t.type_name)
    values = pool.by_type[t.type_name]
    return _StreamedTensor(values, t.n_elements, int(rng.integers(0, len(values))))


class _Writer(gguf.GGUFWriter):
    """GGUFWriter that packs a long array of strings, floats or ints in one go: gguf-py packs every
    element on its own, which took 3.5 s for a 262k-token vocabulary's three arrays (the bytes are
    the same)."""

    def _pack_val(self, val: Any, vtype: gguf.GGUFValueType, add_vtype: bool, sub_type: Any = None) -> bytes:
        fast = (
            vtype == gguf.GGUFValueType.ARRAY and sub_type is None and isinstance(val, list) and len(val) > 1
        )
        if not fast or self.endianess != gguf.GGUFEndian.LITTLE or not _uniform(val):
            return super()._pack_val(val, vtype, add_vtype, sub_type)
        if isinstance(val[0], str):
            encoded = [v.encode("utf-8") for v in val]
            lengths = np.array([len(b) for b in encoded], dtype="<u8")
            items = b"".join(n.tobytes() + b for n, b in zip(lengths, encoded, strict=True))
            ltype = gguf.GGUFValueType.STRING
        else:
            ltype = gguf.GGUFValueType.get_type(val[0])
            items = np.asarray(val, dtype="<f4" if ltype == gguf.GGUFValueType.FLOAT32 else "<i4").tobytes()
        head = self._pack("I", vtype) if add_vtype else b""
        return head + self._pack("I", ltype) + self._pack("Q", len(val)) + items


def _uniform(val: list[Any]) -> bool:
    """All strings, all floats or all (non-bool) ints: the arrays the fast path packs."""
    kinds = {type(v) for v in val}
    return kinds in ({str}, {float}, {int})


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """A SentencePiece vocabulary llama.cpp accepts: specials, byte fallback for any text, words."""
    tokens = list(_SPECIALS) + [f"<0x{b:02X}>" for b in range(256)]  # 256: every byte value
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256
    n_fixed = len(tokens)
    if n_vocab <= n_fixed:
        raise ValueError(f"a synthetic vocabulary needs at least {n_fixed + 1} tokens, not {n_vocab}")
    pieces = ["▁", *(f"▁{w}" for w in _WORDS), *"abcdefghijklmnopqrstuvwxyz"]
    filler = (f"▁w{i}" for i in range(n_vocab))
    while len(tokens) < n_vocab:
        tokens.append(pieces.pop(0) if pieces else next(filler))
        types.append(_NORMAL)
    scores = [0.0] * n_fixed + [-float(i) for i in range(n_vocab - n_fixed)]  # earlier = preferred
    return tokens, scores, types


def _truncated(header: GGUFHeader, n_layers: int | None) -> GGUFHeader:
    """The first ``n_layers`` blocks; per-layer arrays are cut to match, a draft head is dropped."""
    arch = header.architecture
    n_all = int(header.metadata[f"{arch}.block_count"])
    if n_layers is None or n_layers >= n_all:
        return header
    tensors = tuple(t for t in header.tensors if (layer_of(t.name) or 0) < n_layers)
    per_layer = {f"{arch}.{key}" for key in _PER_LAYER_KEYS}
    meta = {k: v[:n_layers] if k in per_layer and isinstance(v, list) else v
            for k, v in header.metadata.items() if k != f"{arch}.nextn_predict_layers"}  # fmt: skip
    return GGUFHeader({**meta, f"{arch}.block_count": n_layers}, tensors)


def _add_metadata(writer: gguf.GGUFWriter, header: GGUFHeader) -> None:
    v = gguf.GGUFValueType
    for key, value in header.metadata.items():
        if key == "general.architecture":
            continue  # GGUFWriter writes it
        if isinstance(value, bool):
            writer.add_key_value(key, value, v.BOOL)
        elif isinstance(value, int):
            writer.add_key_value(key, value, v.UINT32)  # the converter writes counts as uint32
        elif isinstance(value, float):
            writer.add_key_value(key, value, v.FLOAT32)
        elif isinstance(value, str):
            writer.add_key_value(key, value, v.STRING)
        elif isinstance(value, list) and value:  # per-layer values, typed as the converter's add_array
            writer.add_array(key, value)
        else:
            raise TypeError(f"cannot write metadata {key}={value!r}")


def _add_tokenizer(writer: gguf.GGUFWriter, n_vocab: int) -> None:
    tokens, scores, types = _vocab(n_vocab)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def synthetic_header(
    config: dict[str, Any], *, dtype: str = "F16", n_layers: int | None = None
) -> GGUFHeader:
    """The header ``write_synthetic_gguf`` writes (before the tokenizer keys)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    header = header_from_hf_config(config, dtype=dtype)
    return _truncated(header, n_layers)


def write_synthetic_gguf(
    config: dict[str, Any],
    path: str | Path,
    *,
    dtype: str = "F16",
    seed: int = 0,
    n_layers: int | None = None,
    sparse: bool = False,
) -> Path:
    """Write a loadable GGUF with ``config``'s exact tensor table and random weights (zeros in a
    quantized type; none at all, a hole, with ``sparse``); returns ``path``."""
    path = Path(path)
    header = synthetic_header(config, dtype=dtype, n_layers=n_layers)
    arch = header.architecture
    pool, rng = _Pool(seed), np.random.default_rng(seed + 1)
    writer = _Writer(str(path), arch)
    # Not the arch name: llama-vocab.cpp picks per-model token fixes by general.name ("phi3" in it
    # demands an <|endoftext|> token), and this vocabulary is no model's.
    writer.add_name("TailorLM synthetic model")
    _add_metadata(writer, header)
    _add_tokenizer(writer, int(header.metadata[f"{arch}.vocab_size"]))
    for t in header.tensors:
        # The shape is given in elements for every type (a uint8 dtype would make it a byte shape).
        ggml_type = gguf.GGMLQuantizationType[t.type_name]
        writer.add_tensor_info(
            t.name, tuple(reversed(t.shape)), np.dtype(np.float32), t.n_bytes, raw_dtype=ggml_type
        )
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        if sparse:
            _cut_to_length(writer, header)
        else:
            for t in header.tensors:
                writer.write_tensor_data(_tensor_data(t, pool, rng))
    except BaseException:
        writer.close()
        path.unlink(missing_ok=True)
        raise
    writer.close()
    return path


def _cut_to_length(writer: gguf.GGUFWriter, header: GGUFHeader) -> None:
    """Give the file its full length with the data section a hole: each tensor starts aligned, one
    after the other, as write_ti_data_to_file laid out their offsets."""
    assert writer.fout is not None and len(writer.fout) == 1
    fout = writer.fout[0]
    start = gguf.GGUFWriter.ggml_pad(fout.tell(), writer.data_alignment)
    size = sum(gguf.GGUFWriter.ggml_pad(t.n_bytes, writer.data_alignment) for t in header.tensors)
    fout.truncate(start + size)


def _ftype_constant(ftype: str) -> int:
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if ftype.upper() == "F32" else f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}"
    value = getattr(llama_cpp, name, None)
    if value is None:
        known = sorted(
            n.removeprefix("LLAMA_FTYPE_MOSTLY_")
            for n in dir(llama_cpp)
            if n.startswith("LLAMA_FTYPE_MOSTLY_")
        )
        raise ValueError(f"unknown llama.cpp file type {ftype!r}; known: {', '.join(known)}")
    return int(value)


def quantize_gguf(
    src: str | Path, dst: str | Path, ftype: str, *, nthread: int = 2, allow_requantize: bool = False
) -> Path:
    """Quantize ``src`` to ``ftype`` (e.g. ``"Q4_K_M"``) with llama.cpp's own quantizer;
    ``allow_requantize``: from a file already quantized (another level of a real test model)."""
    import llama_cpp

    src, dst = Path(src), Path(dst)
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = nthread
    params.allow_requantize = allow_requantize
    params.ftype = _ftype_constant(ftype)
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    if rc != 0:
        dst.unlink(missing_ok=True)
        raise RuntimeError(
            f"llama_model_quantize({src.name} → {ftype}) failed with code {rc}; see llama.cpp's log"
        )
    return dst


def split_gguf(src: Path, folder: Path, n_parts: int, *, stem: str = "model") -> list[Path]:
    """Cut a real GGUF into ``n_parts`` loadable files the way llama.cpp's ``gguf-split`` does:
    all metadata in part 1, the tensors spread over the parts, ``split.*`` keys in each."""
    reader = gguf.GGUFReader(str(src))
    tensors = list(reader.tensors)
    per = -(-len(tensors) // n_parts)
    arch = str(reader.fields["general.architecture"].contents())
    paths = []
    for i in range(n_parts):
        path = folder / f"{stem}-{i + 1:05d}-of-{n_parts:05d}.gguf"
        w = gguf.GGUFWriter(str(path), arch=arch)
        if i == 0:
            for key, field in reader.fields.items():
                if key.startswith("GGUF.") or key == "general.architecture":
                    continue
                sub = field.types[-1] if len(field.types) > 1 else None
                w.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", n_parts)
        w.add_int32("split.tensors.count", len(tensors))
        for t in tensors[i * per : (i + 1) * per]:
            w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(path)
    return paths

"""A GGUF header as data, read and written independently of the code under test (issue 13).

``read_doc`` reads a well-formed file into a ``Doc`` (key/values kept as encoded bytes, tensor rows
as numbers); tests and the fuzzer (tests/gguf_fuzz.py) edit it — a value, a shape, an offset, a
duplicate — and ``encode`` writes it back, recording where every integer field lies for byte-level
mutations. ``write_doc`` writes the header followed by a sparse data section of the size it
describes, so the file is as large as the real one but no data bytes are written.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

# GGUF value types (gguf.md)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
        U64: "<Q", I64: "<q", F64: "<d"}  # fmt: skip
INT_TYPES = (U8, I8, U16, I16, U32, I32, U64, I64)
U64_MASK = (1 << 64) - 1
MAX_FILE_BYTES = 1 << 40  # sparse files up to 1 TiB (ext4 allows 16 TiB)


@dataclass
class KV:
    key: bytes
    vtype: int
    value: bytes  # encoded, after the type tag (an array: item type, count, items)


@dataclass
class Row:
    name: bytes
    dims: list[int]
    ggml_type: int
    offset: int


@dataclass
class Doc:
    """A GGUF header as data: mutate it, then ``encode`` it."""

    version: int
    kvs: list[KV]
    rows: list[Row]
    alignment: int = 32
    data_bytes: int = 0  # the size of the data section the header describes
    encoded: tuple[bytes, list[Field]] | None = field(default=None, repr=False)  # of an unmutated base

    def clone(self) -> Doc:
        """A copy to mutate (``copy.deepcopy`` takes 25 ms on a 300-row header; this, 0.3)."""
        kvs = [KV(kv.key, kv.vtype, kv.value) for kv in self.kvs]
        rows = [Row(r.name, list(r.dims), r.ggml_type, r.offset) for r in self.rows]
        return Doc(self.version, kvs, rows, self.alignment, self.data_bytes)

    def find(self, key: str) -> KV | None:
        return next((kv for kv in self.kvs if kv.key == key.encode()), None)

    @property
    def arch(self) -> str:
        kv = self.find("general.architecture")
        return kv.value[8:].decode(errors="replace") if kv and kv.vtype == STRING else "llama"


class Field(NamedTuple):
    """An integer in the encoded header: where it is, how wide, and what it counts."""

    offset: int
    width: int
    kind: str


def _value_end(buf: bytes, pos: int, vtype: int) -> int:
    if vtype in _FMT:
        return pos + struct.calcsize(_FMT[vtype])
    if vtype == STRING:
        return pos + 8 + struct.unpack_from("<Q", buf, pos)[0]
    item, n = struct.unpack_from("<IQ", buf, pos)
    pos += 12
    if item in _FMT:
        return pos + n * struct.calcsize(_FMT[item])
    for _ in range(n):
        pos = _value_end(buf, pos, item)
    return pos


def read_doc(path: Path) -> Doc:
    """The header of a well-formed GGUF file as a ``Doc``."""
    size = path.stat().st_size
    with path.open("rb") as f:
        buf = f.read(min(size, 64 << 20))
    _, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    pos, kvs, rows = 24, [], []
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", buf, pos)
        key = buf[pos + 8 : pos + 8 + n]
        (vtype,) = struct.unpack_from("<I", buf, pos + 8 + n)
        pos += 12 + n
        end = _value_end(buf, pos, vtype)
        kvs.append(KV(key, vtype, buf[pos:end]))
        pos = end
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", buf, pos)
        name = buf[pos + 8 : pos + 8 + n]
        (n_dims,) = struct.unpack_from("<I", buf, pos + 8 + n)
        pos += 12 + n
        dims = list(struct.unpack_from(f"<{n_dims}Q", buf, pos))
        ggml_type, offset = struct.unpack_from("<IQ", buf, pos + 8 * n_dims)
        pos += 8 * n_dims + 12
        rows.append(Row(name, dims, ggml_type, offset))
    doc = Doc(version, kvs, rows)
    if (kv := doc.find("general.alignment")) is not None:
        doc.alignment = struct.unpack("<I", kv.value)[0]
    doc.data_bytes = size - pad(pos, doc.alignment)
    return doc


def encode(doc: Doc, *, with_fields: bool = True) -> tuple[bytes, list[Field]]:
    """The header's bytes, and where its integers are (of the first 2,000 rows; none unless asked)."""
    out, fields = bytearray(b"GGUF"), []
    out += struct.pack("<IQQ", doc.version & 0xFFFFFFFF, len(doc.rows), len(doc.kvs))
    fields += [Field(4, 4, "version"), Field(8, 8, "n_tensors"), Field(16, 8, "n_kv")]
    for kv in doc.kvs:
        start = len(out) + 12 + len(kv.key)
        out += struct.pack(f"<Q{len(kv.key)}sI", len(kv.key), kv.key, kv.vtype) + kv.value
        if not with_fields:
            continue
        fields += [Field(start - 12 - len(kv.key), 8, "key_length"), Field(start - 4, 4, "value_type")]
        if kv.vtype == ARRAY:
            fields += [Field(start, 4, "item_type"), Field(start + 4, 8, "array_length")]
        elif kv.vtype in INT_TYPES:
            fields.append(Field(start, len(kv.value), "int_value"))
        elif kv.vtype == STRING:
            fields.append(Field(start, 8, "string_length"))
    for i, r in enumerate(doc.rows):
        start, n, nd = len(out), len(r.name), len(r.dims)
        out += struct.pack(f"<Q{n}sI{nd}QIQ", n, r.name, nd, *(d & U64_MASK for d in r.dims),
                           r.ggml_type & 0xFFFFFFFF, r.offset & U64_MASK)  # fmt: skip  # wraps, as C would
        if with_fields and i < 2_000:
            at = start + 12 + n
            fields += [Field(start, 8, "name_length"), Field(at - 4, 4, "n_dims"),
                       *(Field(at + 8 * k, 8, "dim") for k in range(nd)),
                       Field(at + 8 * nd, 4, "ggml_type"), Field(at + 8 * nd + 4, 8, "tensor_offset")]  # fmt: skip
    return bytes(out), fields


def value(vtype: int, v: Any, item: int = U32) -> bytes:
    """Encode a value of GGUF type ``vtype`` (an array's items are of type ``item``)."""
    if vtype == STRING:
        raw = v if isinstance(v, bytes) else str(v).encode()
        return struct.pack("<Q", len(raw)) + raw
    if vtype == ARRAY:
        return struct.pack("<IQ", item, len(v)) + b"".join(value(item, x) for x in v)
    if vtype in INT_TYPES:
        bits = 8 * struct.calcsize(_FMT[vtype])
        v = int(v) & ((1 << bits) - 1)  # two's complement: -1 is all ones
        return v.to_bytes(bits // 8, "little")
    return struct.pack(_FMT[vtype], v)


def pad(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _sizes() -> dict[int, tuple[int, int]]:
    from gguf.constants import GGML_QUANT_SIZES

    return {int(t.value): (int(b), int(s)) for t, (b, s) in GGML_QUANT_SIZES.items()}


_SIZES: dict[int, tuple[int, int]] = {}


def row_bytes(r: Row) -> int:
    """Bytes of a tensor as ggml counts them (0 for a type it does not know)."""
    if not _SIZES:
        _SIZES.update(_sizes())
    block, size = _SIZES.get(r.ggml_type, (1, 0))
    dims = r.dims or [1]
    return dims[0] // block * size * math.prod(dims[1:])


def relayout(doc: Doc) -> None:
    """Offsets back to back in table order, as llama.cpp's writer lays them out."""
    offset = 0
    for r in doc.rows:
        r.offset = offset
        offset += pad(row_bytes(r), doc.alignment)
    doc.data_bytes = offset


def _cut_array(raw: bytes, n: int) -> bytes:
    item, count = struct.unpack_from("<IQ", raw, 0)
    if count <= n:
        return raw
    if item in _FMT:
        end = 12 + n * struct.calcsize(_FMT[item])
    else:
        end = 12
        for _ in range(n):
            end = _value_end(raw, end, item)
    return struct.pack("<IQ", item, n) + raw[12:end]


def cut_vocabulary(doc: Doc, n_vocab: int) -> Doc:
    """The same header with its tokenizer arrays and vocabulary-sized tensors cut to ``n_vocab``."""
    d = doc.clone()
    for kv in d.kvs:
        if kv.vtype == ARRAY and kv.key.startswith(b"tokenizer.ggml."):
            kv.value = _cut_array(kv.value, n_vocab)
    for r in d.rows:
        if r.name in (b"token_embd.weight", b"output.weight") and len(r.dims) == 2:
            r.dims[1] = n_vocab
    if (kv := d.find(f"{d.arch}.vocab_size")) is not None and kv.vtype == U32:
        kv.value = value(U32, n_vocab)
    relayout(d)
    return d


def tiny_doc(*, moe: bool) -> Doc:
    """A small llama (dense, or Mixtral-style with 4 experts) with K-quant tensors."""
    n_embd, n_layer, n_head, n_kv, n_ff, n_vocab, n_exp = 256, 2, 4, 2, 512, 320, 4
    hd = n_embd // n_head
    kvs = [KV(b"general.architecture", STRING, value(STRING, "llama")),
           KV(b"general.name", STRING, value(STRING, "tiny-moe" if moe else "tiny"))]  # fmt: skip
    for key, v in [("block_count", n_layer), ("context_length", 2048), ("embedding_length", n_embd),
                   ("feed_forward_length", n_ff), ("attention.head_count", n_head),
                   ("attention.head_count_kv", n_kv)] + ([("expert_count", n_exp), ("expert_used_count", 2)] if moe else []):  # fmt: skip
        kvs.append(KV(f"llama.{key}".encode(), U32, value(U32, v)))
    kvs += [KV(b"llama.attention.layer_norm_rms_epsilon", F32, value(F32, 1e-5)),
            KV(b"general.file_type", U32, value(U32, 15)),
            KV(b"tokenizer.ggml.model", STRING, value(STRING, "llama")),
            KV(b"tokenizer.ggml.tokens", ARRAY, value(ARRAY, [f"t{i}" for i in range(n_vocab)], STRING)),
            KV(b"tokenizer.ggml.scores", ARRAY, value(ARRAY, [0.0] * n_vocab, F32)),
            KV(b"tokenizer.ggml.token_type", ARRAY, value(ARRAY, [1] * n_vocab, I32))]  # fmt: skip
    q4k, q6k, f32 = 12, 14, 0
    rows = [Row(b"token_embd.weight", [n_embd, n_vocab], q4k, 0), Row(b"output_norm.weight", [n_embd], f32, 0),
            Row(b"output.weight", [n_embd, n_vocab], q6k, 0)]  # fmt: skip
    for il in range(n_layer):
        blk = f"blk.{il}.".encode()
        rows += [Row(blk + b"attn_norm.weight", [n_embd], f32, 0), Row(blk + b"attn_q.weight", [n_embd, n_embd], q4k, 0),
                 Row(blk + b"attn_k.weight", [n_embd, n_kv * hd], q4k, 0), Row(blk + b"attn_v.weight", [n_embd, n_kv * hd], q6k, 0),
                 Row(blk + b"attn_output.weight", [n_embd, n_embd], q4k, 0), Row(blk + b"ffn_norm.weight", [n_embd], f32, 0)]  # fmt: skip
        if moe:
            rows += [Row(blk + b"ffn_gate_inp.weight", [n_embd, n_exp], f32, 0),
                     Row(blk + b"ffn_gate_exps.weight", [n_embd, n_ff, n_exp], q4k, 0),
                     Row(blk + b"ffn_up_exps.weight", [n_embd, n_ff, n_exp], q4k, 0),
                     Row(blk + b"ffn_down_exps.weight", [n_ff, n_embd, n_exp], q6k, 0)]  # fmt: skip
        else:
            rows += [Row(blk + b"ffn_gate.weight", [n_embd, n_ff], q4k, 0), Row(blk + b"ffn_up.weight", [n_embd, n_ff], q4k, 0),
                     Row(blk + b"ffn_down.weight", [n_ff, n_embd], q6k, 0)]  # fmt: skip
    doc = Doc(3, kvs, rows)
    relayout(doc)
    return doc


def write_sparse(path: Path, data: bytes, size: int) -> Path:
    """``data``, then zeros up to ``size`` bytes (at most MAX_FILE_BYTES) as a hole: nothing written."""
    path.write_bytes(data)
    if min(size, MAX_FILE_BYTES) > len(data):
        with path.open("r+b") as f:
            f.truncate(min(size, MAX_FILE_BYTES))
    return path


def write_doc(doc: Doc, path: Path) -> Path:
    """``doc`` as a file: its header, then a sparse data section of the size it describes."""
    raw, _ = encode(doc, with_fields=False)
    return write_sparse(path, raw, pad(len(raw), doc.alignment) + doc.data_bytes)

"""Read a GGUF header — metadata and tensor table — from any byte-range source.

The `gguf` package reads whole local files through ``np.memmap``. We need the same header from a
file on disk, from a byte range of a remote file on the Hub, and without touching the weights, so
this is a small streaming parser over a ``ByteSource``: ``read(offset, size) -> bytes``. Format:
https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (version 2 and 3, little-endian).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from app.core.errors import CorruptModelError, ModelNotFoundError, ModelReadError, NotAGGUFError
from app.core.files import not_a_regular_file
from app.core.model import ggml_types
from app.core.model.gguf_cursor import HINT as _HINT
from app.core.model.gguf_cursor import INT64_MAX, MAX_DIMS, Cursor
from app.core.model.gguf_cursor import damaged as _damaged

GGUF_MAGIC = b"GGUF"
ALIGNMENT_KEY = "general.alignment"
DEFAULT_ALIGNMENT = 32  # gguf.h GGUF_DEFAULT_ALIGNMENT
# Arrays with more elements than this are kept as a length only (token lists, merges, scores):
# the advisor never needs their contents and they are the bulk of every header.
MAX_ARRAY_KEEP = 4096
# llama.cpp's own limits (ggml/src/gguf.cpp, ggml/include/ggml.h): a header past one of them is
# refused by gguf_init_from_file too, so we refuse it the same way.
MAX_ARRAY_ELEMENTS = 1 << 30  # GGUF_MAX_ARRAY_ELEMENTS
MAX_TENSOR_NAME_BYTES = 63  # GGML_MAX_NAME (64) counts the terminating NUL
SIZE_MAX = (1 << 64) - 1  # a tensor's size in bytes is a size_t
# Ours, tighter than llama.cpp (which bounds these only by memory), so a hostile count is refused
# before it costs time: the largest real tensor tables are a few thousand rows (per-expert MoE
# files such as Snowflake Arctic: ~13,500), and a 65,536-row table parses in well under a second.
MAX_TENSORS = 65_536
MAX_KV = 100_000
# The fewest bytes one key/value (8-byte length, a 1-byte key, type, a 1-byte value) and one tensor
# row (8-byte name length, no name, n_dims, type, offset) can take: counts beyond the file are lies.
MIN_KV_BYTES = 8 + 1 + 4 + 1
MIN_TENSOR_BYTES = 8 + 4 + 4 + 8


class ByteSource(Protocol):
    """Anything that can return ``size`` bytes at ``offset`` (fewer only at the end)."""

    def read(self, offset: int, size: int) -> bytes: ...

    @property
    def size(self) -> int | None: ...


class FileSource:
    """A local file as a ``ByteSource``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Opening a pipe blocks until a writer comes: ask stat first (app/core/files.py).
        if (reason := not_a_regular_file(self.path)) is not None:
            if self.path.is_dir():
                raise NotAGGUFError(f"{self.path} is a folder, not a GGUF file")
            if not os.path.lexists(self.path):
                raise ModelNotFoundError(f"No such file: {self.path}")
            raise ModelReadError(f"{self.path} {reason}; it was not read.")
        try:
            self._f = self.path.open("rb")
        except FileNotFoundError:
            raise ModelNotFoundError(f"No such file: {self.path}") from None
        except OSError as exc:
            raise ModelReadError(f"{self.path} cannot be read ({exc.strerror or exc}).") from None
        self._size = os.fstat(self._f.fileno()).st_size

    @property
    def size(self) -> int | None:
        return self._size

    def read(self, offset: int, size: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(size)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ArrayLength:
    """A long metadata array we skipped: only its element type and length are kept."""

    item_type: str
    length: int


@dataclass(frozen=True)
class TensorInfo:
    """One row of the tensor table. ``shape`` is in ggml order: ``shape[0]`` is the row length."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    offset_bytes: int = 0  # from the start of the data section

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def n_bytes(self) -> int:
        return ggml_types.tensor_bytes(self.type_name, self.shape)


@dataclass(frozen=True)
class GGUFHeader:
    """Metadata key/values and tensor table of a GGUF file (or of a model described like one)."""

    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    version: int = 3
    data_offset_bytes: int = 0
    file_size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_key(self, key: str, default: Any = None) -> Any:
        """``{arch}.{key}``, e.g. ``arch_key("block_count")``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


# GGUF value types (gguf.md)
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "UINT8"),
    1: ("<b", "INT8"),
    2: ("<H", "UINT16"),
    3: ("<h", "INT16"),
    4: ("<I", "UINT32"),
    5: ("<i", "INT32"),
    6: ("<f", "FLOAT32"),
    7: ("<?", "BOOL"),
    10: ("<Q", "UINT64"),
    11: ("<q", "INT64"),
    12: ("<d", "FLOAT64"),
}
_UINT32, _STRING, _ARRAY = 4, 8, 9


def _read_value(cur: Cursor, key: str, vtype: int) -> Any:
    if vtype in _SCALARS:
        return cur.unpack(_SCALARS[vtype][0])
    if vtype == _STRING:
        return cur.string()
    if vtype != _ARRAY:
        raise _damaged(f"{key!r} has the unknown value type {vtype}")
    item_type: int = cur.unpack("<I")
    length: int = cur.unpack("<Q")
    if item_type == _ARRAY:  # gguf.cpp refuses arrays of arrays: GGUF_TYPE_ARRAY is not an element type
        raise _damaged(f"{key!r} is an array of arrays")
    if item_type not in _SCALARS and item_type != _STRING:
        raise _damaged(f"{key!r} is an array of the unknown type {item_type}")
    if length > MAX_ARRAY_ELEMENTS:
        raise _damaged(f"{key!r} claims {length:,} elements")
    item_size = 8 if item_type == _STRING else struct.calcsize(_SCALARS[item_type][0])
    cur.need(length * item_size)  # strings: at least their 8-byte lengths
    if length > MAX_ARRAY_KEEP:
        if item_type == _STRING:
            cur.skip_strings(length)
            return ArrayLength("STRING", length)
        cur.skip(length * item_size)
        return ArrayLength(_SCALARS[item_type][1], length)
    if item_type == _STRING:
        return [cur.string() for _ in range(length)]
    return list(cur.unpack_all(f"<{length}{_SCALARS[item_type][0][1]}"))


def _read_metadata(cur: Cursor, n_kv: int) -> tuple[dict[str, Any], int]:
    """The key/value pairs and the alignment they set, checked as gguf.cpp checks them."""
    metadata: dict[str, Any] = {}
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        raw_key = cur.raw_string()
        if not raw_key:
            raise _damaged(f"metadata key {i} is empty")
        key = raw_key.decode("utf-8", errors="replace")
        if key in metadata:
            raise _damaged(f"the key {key!r} appears twice")
        vtype: int = cur.unpack("<I")
        metadata[key] = value = _read_value(cur, key, vtype)
        if key == ALIGNMENT_KEY:
            if vtype != _UINT32:
                raise _damaged(f"{ALIGNMENT_KEY} must be a UINT32, not {_type_name(vtype)}")
            if value == 0 or value & (value - 1):
                raise _damaged(f"{ALIGNMENT_KEY} is {value}, not a power of two")
            alignment = value
    return metadata, alignment


def _type_name(vtype: int) -> str:
    return {_STRING: "STRING", _ARRAY: "ARRAY"}.get(vtype) or _SCALARS[vtype][1]


def _tensor_table(cur: Cursor, n_tensors: int, alignment: int) -> list[TensorInfo]:
    """The tensor table, each row refused where gguf.cpp's gguf_init_from_reader refuses it."""
    rows: list[TensorInfo] = []
    seen: set[str] = set()
    types: dict[int, tuple[str, int, int]] = {}  # type id -> name, block size, block bytes
    data_end = 0  # where the tensors so far end in the data section, each padded to the alignment
    for index in range(n_tensors):
        raw_name, n_dims, tail = cur.tensor_row()
        name = raw_name.decode("utf-8", errors="replace")
        if len(raw_name) > MAX_TENSOR_NAME_BYTES:
            raise _damaged(
                f"tensor {index}'s name is {len(raw_name)} bytes long (at most {MAX_TENSOR_NAME_BYTES})"
            )
        if name in seen:
            raise _damaged(f"two tensors are named {name!r}")
        seen.add(name)
        if n_dims > MAX_DIMS:
            raise _damaged(f"tensor {name!r} claims {n_dims} dimensions (at most {MAX_DIMS})")
        *shape, type_id, offset = tail
        n_elements = 1
        for n in shape:
            n_elements *= n
            if n > INT64_MAX or n_elements > INT64_MAX:
                raise _damaged(f"tensor {name!r} has the impossible shape {shape}")
        if type_id not in types:
            types[type_id] = _ggml_type(name, type_id)
        type_name, block, block_bytes = types[type_id]
        row = shape[0] if shape else 1  # ggml pads a missing dimension with 1
        if row % block:
            raise _damaged(
                f"tensor {name!r} has rows of {row:,} values, not whole {type_name} blocks of {block}"
            )
        n_bytes = n_elements // block * block_bytes
        if n_bytes > SIZE_MAX:
            raise _damaged(f"tensor {name!r} is larger than any file can be")
        if offset != data_end:  # gguf.cpp: back to back, in table order
            raise _damaged(
                f"tensor {name!r} starts at byte {offset:,} of the data section, where the tensors "
                f"before it end at {data_end:,} (they overlap, are out of order or leave a gap)"
            )
        data_end += -(-n_bytes // alignment) * alignment
        rows.append(TensorInfo(name, tuple(shape), type_name, offset))
    return rows


def _ggml_type(tensor: str, type_id: int) -> tuple[str, int, int]:
    try:
        name = ggml_types.type_name(type_id)
    except ValueError:
        raise CorruptModelError(
            f"Tensor {tensor!r} has unknown type {type_id}.",
            hint="The file may need a newer llama.cpp, or it is damaged.",
        ) from None
    return name, ggml_types.block_size(name), ggml_types.block_bytes(name)


def read_header(source: ByteSource) -> GGUFHeader:
    """Parse the header of the GGUF behind ``source``; raise ``NotAGGUFError``/``CorruptModelError``.

    Everything llama.cpp's own parser (``gguf_init_from_file``) refuses is refused here too, with
    one sentence naming the key or tensor; nothing is read past the header.
    """
    cur = Cursor(source)
    try:
        magic = cur.take(4)
    except CorruptModelError:
        raise NotAGGUFError("The file is empty or too short to be a GGUF model.") from None
    if magic != GGUF_MAGIC:
        raise NotAGGUFError(
            "This is not a GGUF file (it does not start with 'GGUF').",
            hint="Choose a .gguf model file, or a Hugging Face checkpoint folder.",
        )
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise CorruptModelError(f"Unsupported GGUF version {version} (TailorLM reads versions 2 and 3).")
    n_tensors, n_kv = cur.unpack_all("<QQ")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise CorruptModelError(
            f"The GGUF header counts are impossible ({n_tensors:,} tensors, {n_kv:,} keys): "
            "the file is damaged.",
            hint=_HINT,
        )
    left = None if source.size is None else source.size - cur.pos
    if left is not None and n_tensors * MIN_TENSOR_BYTES + n_kv * MIN_KV_BYTES > left:
        raise CorruptModelError(
            f"The GGUF header ends early: it counts {n_tensors:,} tensors and {n_kv:,} keys, more than "
            f"the {left:,} bytes that follow can hold (the file is truncated or damaged).",
            hint="Download it again.",
        )
    metadata, alignment = _read_metadata(cur, n_kv)
    tensors = _tensor_table(cur, n_tensors, alignment)
    header = GGUFHeader(
        metadata=metadata,
        tensors=tuple(tensors),
        version=version,
        data_offset_bytes=-(-cur.pos // alignment) * alignment,
        file_size_bytes=source.size,
    )
    _check_tensor_extent(header)
    return header


def _check_tensor_extent(header: GGUFHeader) -> None:
    """A file shorter than its tensor table says is truncated: say so now, not at load time."""
    if header.file_size_bytes is None or not header.tensors:
        return
    last = header.tensors[-1]  # the offsets are checked: the last row ends the data
    end = header.data_offset_bytes + last.offset_bytes + last.n_bytes
    if end > header.file_size_bytes:
        missing = end - header.file_size_bytes
        raise CorruptModelError(
            f"The file is truncated: its tensors need {end:,} bytes but it has "
            f"{header.file_size_bytes:,} ({missing:,} missing).",
            hint="Download it again (TailorLM resumes partial downloads).",
        )


def join_split_parts(parts: list[GGUFHeader], size_bytes: int | None) -> GGUFHeader:
    """One header for a split model: the first part's metadata, every part's tensors."""
    first = parts[0]
    tensors = tuple(t for h in parts for t in h.tensors)
    return GGUFHeader(first.metadata, tensors, first.version, first.data_offset_bytes, size_bytes)


def read_gguf_file(path: str | Path) -> GGUFHeader:
    """Header of a local GGUF file; never reads the weights."""
    with FileSource(path) as src:
        return read_header(src)

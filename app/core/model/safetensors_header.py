"""Read the JSON header of a safetensors file (tensor names, dtypes, shapes) without the weights.

Format: 8-byte little-endian header length N, then N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``
(https://github.com/huggingface/safetensors#format). Works over any ``ByteSource`` so the hub
can read remote headers with range requests.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import CorruptModelError
from app.core.model.gguf_header import ByteSource, FileSource

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit (safetensors/src/tensor.rs)
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


@dataclass(frozen=True)
class SafeTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]  # torch order: shape[0] is the output dimension
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


def read_safetensors_header(source: ByteSource, *, name: str = "safetensors file") -> tuple[SafeTensor, ...]:
    raw_len = source.read(0, 8)
    if len(raw_len) < 8:
        raise CorruptModelError(f"{name} is empty or truncated.", hint="Download it again.")
    (n,) = struct.unpack("<Q", raw_len)
    if n == 0 or n > MAX_HEADER_BYTES:
        raise CorruptModelError(f"{name} is not a valid safetensors file (header length {n}).")
    raw = source.read(8, n)
    if len(raw) < n:
        raise CorruptModelError(f"{name} is truncated inside its header.", hint="Download it again.")
    try:
        table = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"{name} has a damaged header ({exc.__class__.__name__}).") from None
    if not isinstance(table, dict):
        raise CorruptModelError(f"{name} has a damaged header (not a JSON object).")
    out: list[SafeTensor] = []
    data_end = 0
    for key, entry in table.items():
        if key == "__metadata__":
            continue
        try:
            dtype = str(entry["dtype"])
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CorruptModelError(f"{name}: tensor {key!r} has a damaged entry.") from None
        out.append(SafeTensor(key, dtype, shape, end - begin))
        data_end = max(data_end, end)
    size = source.size
    if size is not None and 8 + n + data_end > size:
        raise CorruptModelError(
            f"{name} is truncated: its tensors need {8 + n + data_end:,} bytes but it has {size:,}.",
            hint="Download it again.",
        )
    return tuple(out)


def read_safetensors_file(path: Path) -> tuple[SafeTensor, ...]:
    with FileSource(path) as src:
        return read_safetensors_header(src, name=path.name)


def checkpoint_tensors(folder: Path) -> tuple[SafeTensor, ...]:
    """All tensors of a (possibly sharded) safetensors checkpoint folder."""
    files = sorted(folder.glob("*.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CorruptModelError(f"{index.name} is damaged.") from None
        wanted = sorted(set(weight_map.values()))
        missing = [f for f in wanted if not (folder / f).exists()]
        if missing:
            raise CorruptModelError(
                f"The checkpoint is incomplete: {', '.join(missing[:3])} {'is' if len(missing) == 1 else 'are'} missing.",
                hint="Download the missing shards.",
            )
        files = [folder / f for f in wanted]
    tensors: list[SafeTensor] = []
    for f in files:
        tensors.extend(read_safetensors_file(f))
    return tuple(tensors)

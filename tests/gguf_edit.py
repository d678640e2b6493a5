"""Copy a real GGUF with one metadata string replaced (a hostile chat template, say).

The tensors stay byte for byte: only the key/value section changes, and the data section is
re-aligned (tensor offsets are relative to its start, so they hold).
"""

from __future__ import annotations

import struct
from pathlib import Path

from gguf import GGUFReader

_STRING = 8  # GGUF value type of a string (gguf.md)


def with_string(src: Path, dst: Path, key: str, value: str) -> Path:
    """Write ``dst``: ``src`` with metadata ``key`` set to the string ``value`` (added if absent)."""
    reader = GGUFReader(src)
    raw = src.read_bytes()
    last = reader.tensors[-1].field
    header_end = last.offset + sum(p.nbytes for p in last.parts)
    key_bytes, value_bytes = key.encode(), value.encode()
    entry = (struct.pack("<Q", len(key_bytes)) + key_bytes + struct.pack("<I", _STRING)
             + struct.pack("<Q", len(value_bytes)) + value_bytes)  # fmt: skip
    old = reader.fields.get(key)
    if old is not None:
        start, end = old.offset, old.offset + sum(p.nbytes for p in old.parts)
        header = raw[:start] + entry + raw[end:header_end]
    else:  # a new key goes after the last one; the key count (bytes 16..24) grows by one
        kv_end = max(f.offset + sum(p.nbytes for p in f.parts) for f in reader.fields.values()
                     if not f.name.startswith("GGUF."))  # fmt: skip
        n_kv = struct.unpack_from("<Q", raw, 16)[0]
        header = raw[:16] + struct.pack("<Q", n_kv + 1) + raw[24:kv_end] + entry + raw[kv_end:header_end]
    align = int(reader.alignment)
    padding = b"\0" * (-len(header) % align)
    dst.write_bytes(header + padding + raw[reader.data_offset :])
    return dst

"""ggml tensor types: names, block sizes and bytes per row.

Block layouts come from the `gguf` package (``GGML_QUANT_SIZES``, mirrored from
llama.cpp ``ggml/src/ggml-common.h``), so they follow the file format as it grows: MXFP4, gpt-oss's
expert type, is type 39, 32 values in 17 bytes (one E8M0 scale, 16 bytes of 4-bit values:
``block_mxfp4`` there, ``type_traits[GGML_TYPE_MXFP4]`` in ``ggml.c``).
"""

from __future__ import annotations

import math
from functools import cache

# Types the vendored llama.cpp has and the `gguf` package does not yet: id → (name, elements per
# block, bytes per block). Q2_0 (ggml-common.h ``block_q2_0``): 64 two-bit values and an F16 scale.
NEWER_TYPES = {42: ("Q2_0", 64, 2 + 64 // 4)}


@cache
def _tables() -> tuple[dict[int, str], dict[str, tuple[int, int]]]:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    names = {int(t.value): t.name for t in GGMLQuantizationType}
    sizes = {t.name: (int(b), int(s)) for t, (b, s) in GGML_QUANT_SIZES.items()}
    for type_id, (name, block, nbytes) in NEWER_TYPES.items():
        names.setdefault(type_id, name)
        sizes.setdefault(name, (block, nbytes))
    return names, sizes


def type_name(type_id: int) -> str:
    """The ggml name of a numeric tensor type (``12`` → ``"Q4_K"``)."""
    names, _ = _tables()
    try:
        return names[type_id]
    except KeyError:
        raise ValueError(f"unknown ggml tensor type {type_id}") from None


def block_size(name: str) -> int:
    """Elements per block (256 for K-quants, 32 for Q4_0 … Q8_0, 1 for floats)."""
    return _tables()[1][name][0]


def block_bytes(name: str) -> int:
    """Bytes per block of ``name``."""
    return _tables()[1][name][1]


def known_type(name: str) -> bool:
    return name in _tables()[1]


def bits_per_weight(name: str) -> float:
    bs, nb = _tables()[1][name]
    return nb * 8 / bs


def row_bytes(name: str, n_per_row: int) -> int:
    """Bytes of one row of ``n_per_row`` elements (ggml_row_size)."""
    bs, nb = _tables()[1][name]
    if n_per_row % bs:
        raise ValueError(f"a row of {n_per_row} elements is not a whole number of {name} blocks")
    return n_per_row // bs * nb


def tensor_bytes(name: str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of ``shape`` (ggml order: ``shape[0]`` is the row length). A tensor of no
    dimensions is one value, as in ggml, which pads every missing dimension with 1."""
    if not shape:
        return row_bytes(name, 1)
    return row_bytes(name, shape[0]) * math.prod(shape[1:])

"""ggml's own quantization functions, called through the libllama that llama-cpp-python loaded
(``llama_cpp.llama_cpp._lib`` resolves ggml-base's symbols too, as in :mod:`app.engine.expert_offload`):
the very code ``llama-quantize`` runs, so a round trip here is byte for byte what a file would hold.

ggml asserts — aborting the whole process — on a block-misaligned row, an unknown type or a
missing importance matrix where it needs one; every call checks those first, and the callers run
in a child process (:mod:`app.engine.lab_child`) for whatever is left.

The C API (ggml/include/ggml.h of the llama.cpp behind llama-cpp-python 0.3.36):
``ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix)`` quantizes whole rows,
each on its own (ggml/src/ggml.c), so any sample of rows gives the bytes the whole tensor would
have in those rows; ``ggml_get_type_traits(type)->to_float`` turns a row back into float32.
"""

from __future__ import annotations

import ctypes
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from app.core.errors import TailorError
from app.core.model.quant_mix import IMATRIX_TENSOR_TYPES

# enum ggml_type (ggml/include/ggml.h); removed and interleaved ids are left out.
TYPE_IDS: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q8_1": 9, "Q2_K": 10,
    "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "Q8_K": 15, "IQ2_XXS": 16, "IQ2_XS": 17, "IQ3_XXS": 18,
    "IQ1_S": 19, "IQ4_NL": 20, "IQ3_S": 21, "IQ2_S": 22, "IQ4_XS": 23, "I8": 24, "I16": 25, "I32": 26,
    "I64": 27, "F64": 28, "IQ1_M": 29, "BF16": 30, "TQ1_0": 34, "TQ2_0": 35, "MXFP4": 39, "NVFP4": 40,
    "Q1_0": 41, "Q2_0": 42,
}  # fmt: skip
# The targets ggml_quantize_chunk's switch handles (ggml/src/ggml.c), most bits per weight first;
# the order is checked against ggml's own block sizes by the tests.
QUANTIZABLE: tuple[str, ...] = (
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_1", "Q5_K", "Q5_0", "Q4_1", "Q4_K", "Q4_0", "IQ4_NL",
    "NVFP4", "IQ4_XS", "MXFP4", "Q3_K", "IQ3_S", "IQ3_XXS", "Q2_K", "IQ2_S", "IQ2_XS", "Q2_0", "TQ2_0",
    "IQ2_XXS", "IQ1_M", "TQ1_0", "IQ1_S", "Q1_0",
)  # fmt: skip
# ggml_quantize_requires_imatrix: ggml asserts (aborts) without an importance matrix.
GGML_NEEDS_IMATRIX = frozenset({"IQ2_XXS", "IQ2_XS", "IQ1_S"})
# llama-quant.cpp tensor_requires_imatrix: llama.cpp refuses these without one ("the result will
# be garbage, so bailing out"), except for the token embedding and the output layer.
LLAMA_NEEDS_IMATRIX = IMATRIX_TENSOR_TYPES
# ggml_quantize_init builds lookup grids for these, once per process: measured on 2 laptop cores,
# IQ1_S/IQ1_M 5-14 s, IQ2_S 4.7 s, IQ2_XS 3.7 s, IQ2_XXS 1.3 s, IQ3_* 0.2 s.
SLOW_INIT = frozenset({"IQ1_S", "IQ1_M", "IQ2_S", "IQ2_XS", "IQ2_XXS"})


class _Traits(ctypes.Structure):
    """struct ggml_type_traits (ggml/include/ggml.h)."""

    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


_ToFloat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


@dataclass(frozen=True)
class GgmlType:
    """One type as ggml itself describes it."""

    name: str
    type_id: int
    block_size: int  # weights per block
    block_bytes: int
    to_float: Any  # the C function, or None (F32 needs none; integer types have none)

    @property
    def bits_per_weight(self) -> float:
        return self.block_bytes * 8 / self.block_size


@dataclass(frozen=True)
class RoundTrip:
    quantized: np.ndarray  # uint8 (rows, bytes_per_row): what a GGUF would hold for these rows
    dequantized: np.ndarray  # float32 (rows, n_per_row)
    bytes_per_row: int


@cache
def _lib() -> Any:
    from llama_cpp.llama_cpp import _lib as lib

    lib.ggml_get_type_traits.restype = ctypes.POINTER(_Traits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_quantize_init.restype = None
    lib.ggml_quantize_init.argtypes = [ctypes.c_int]
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]  # fmt: skip
    return lib


@cache
def ggml_type(name: str) -> GgmlType:
    """``name`` as ggml describes it; TailorError for a type this ggml does not have."""
    type_id = TYPE_IDS.get(name)
    if type_id is None:
        raise TailorError(f"ggml has no tensor type {name}.")
    t = _lib().ggml_get_type_traits(type_id).contents
    if (t.type_name or b"").decode().upper() != name or t.blck_size < 1:
        raise TailorError(f"This llama.cpp build does not know the tensor type {name}.")
    to_float = _ToFloat(t.to_float) if t.to_float else None
    return GgmlType(name, type_id, int(t.blck_size), int(t.type_size), to_float)


def ggml_requires_imatrix(name: str) -> bool:
    """ggml's own answer: whether quantizing to ``name`` without an importance matrix aborts."""
    return bool(_lib().ggml_quantize_requires_imatrix(ggml_type(name).type_id))


def row_bytes(name: str, n_per_row: int) -> int:
    """ggml_row_size: bytes of one row of ``n_per_row`` weights (whole blocks only)."""
    t = ggml_type(name)
    if n_per_row % t.block_size:
        raise TailorError(
            f"A row of {n_per_row} weights is not a whole number of {name} blocks of {t.block_size}."
        )
    return int(_lib().ggml_row_size(t.type_id, n_per_row))


def to_float(name: str, raw: np.ndarray, n_per_row: int) -> np.ndarray:
    """Rows of type ``name`` (uint8, one row of bytes each) as float32 (rows, n_per_row), with
    ggml's own conversion (the one llama-quantize reads a source tensor with)."""
    t = ggml_type(name)
    n_bytes = row_bytes(name, n_per_row)
    if raw.ndim != 2 or raw.shape[1] != n_bytes or raw.dtype != np.uint8:
        raise TailorError(
            f"{raw.shape} bytes are not rows of {n_per_row} {name} weights ({n_bytes} bytes each)."
        )
    src = np.ascontiguousarray(raw)
    if name == "F32":
        return src.view(np.float32).reshape(len(src), n_per_row).copy()
    if t.to_float is None:
        raise TailorError(f"ggml has no conversion from {name} to float32, so it cannot be compared.")
    out = np.empty((len(src), n_per_row), dtype=np.float32)
    if out.size:
        t.to_float(src.ctypes.data, out.ctypes.data, out.size)
    return out


def _threads(n_rows: int, n_threads: int) -> list[tuple[int, int]]:
    """Row ranges, one per thread (ggml_quantize_chunk releases the GIL through ctypes)."""
    parts = max(1, min(n_threads, n_rows))
    bounds = np.linspace(0, n_rows, parts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def quantize(
    name: str, values: np.ndarray, imatrix: np.ndarray | None = None, *, n_threads: int = 1
) -> np.ndarray:
    """float32 rows → the bytes ggml_quantize_chunk writes for them, (rows, bytes_per_row) uint8.
    ``imatrix``: one importance per column (float32, length n_per_row), or None."""
    if name not in QUANTIZABLE:
        raise TailorError(f"ggml cannot quantize to {name}.", hint=f"Choose one of {', '.join(QUANTIZABLE)}.")
    t = ggml_type(name)
    if values.ndim != 2:
        raise TailorError("ggml quantizes rows: give a two-dimensional array.")
    n_rows, n_per_row = values.shape
    n_bytes = row_bytes(name, n_per_row)
    src = np.ascontiguousarray(values, dtype=np.float32)
    weights = None
    if imatrix is not None:
        weights = np.ascontiguousarray(imatrix, dtype=np.float32)
        if weights.shape != (n_per_row,):
            raise TailorError(
                f"An importance matrix of {weights.size} values does not fit rows of {n_per_row}."
            )
    elif ggml_requires_imatrix(name):
        raise TailorError(f"ggml cannot make {name} without an importance matrix.",
                          hint="Choose an importance-matrix file for this model.")  # fmt: skip
    out = np.zeros((n_rows, n_bytes), dtype=np.uint8)
    lib, w_ptr = _lib(), (weights.ctypes.data if weights is not None else None)
    lib.ggml_quantize_init(t.type_id)  # the IQ grids once, before the threads share them

    def work(rows: tuple[int, int]) -> int:
        a, b = rows
        return int(lib.ggml_quantize_chunk(t.type_id, src[a:b].ctypes.data, out[a:b].ctypes.data, 0, b - a,
                                           n_per_row, w_ptr))  # fmt: skip

    ranges = _threads(n_rows, n_threads)
    with ThreadPoolExecutor(max_workers=len(ranges) or 1) as pool:
        written = sum(pool.map(work, ranges))
    if written != out.size:
        raise TailorError(f"ggml wrote {written} bytes of {name} instead of {out.size}.")
    return out


def round_trip(
    name: str, values: np.ndarray, imatrix: np.ndarray | None = None, *, n_threads: int = 1
) -> RoundTrip:
    """Quantize ``values`` (float32 rows) to ``name`` with ggml and turn the bytes back into float32."""
    quantized = quantize(name, values, imatrix, n_threads=n_threads)
    return RoundTrip(quantized, to_float(name, quantized, values.shape[1]), quantized.shape[1])

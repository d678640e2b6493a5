"""llama.cpp's importance-matrix files, read and written without llama.cpp.

An importance matrix holds, for every weight matrix a model multiplies activations with, the sum of
the squared activations of each input column over a calibration text (``in_sum2``) and how many
token rows went into it (``counts``); one row per expert for stacked MoE experts. The quantizer
weighs each column's rounding error by ``in_sum2 / counts``: columns that see large activations are
kept more precise (llama.cpp's answer to GPTQ/AWQ-style calibration).

Two formats, both accepted by ``llama-quantize --imatrix``:
- GGUF (``llama-imatrix``'s default since mid-2025, ``tools/imatrix/imatrix.cpp::save_imatrix``):
  ``general.type = "imatrix"``, ``imatrix.datasets`` (strings), ``imatrix.chunk_count``,
  ``imatrix.chunk_size`` (u32), and per entry two F32 tensors ``NAME.in_sum2`` (ne0 × n_mat) and
  ``NAME.counts`` (1 × n_mat), entries in name order. This is what we write.
- legacy ``.dat``: int32 entry count; per entry the name, the number of calls and the values
  already averaged and scaled by the calls; then optionally the chunk count and a dataset name.

Files are written by strangers: sizes are checked against the file before anything is allocated,
names are bounded, values must be finite and counts non-negative.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.errors import CorruptModelError, TailorError
from app.core.model.gguf_header import (
    DEFAULT_ALIGNMENT,
    MAX_TENSOR_NAME_BYTES,
    ArrayLength,
    read_gguf_file,
)

SUM_SUFFIX, COUNT_SUFFIX = ".in_sum2", ".counts"
MAX_ENTRIES = 1 << 16  # a model has at most a few thousand weight matrices
MAX_LEGACY_NAME_BYTES = 4096
_GGUF_F32, _GGUF_U32, _GGUF_STRING, _GGUF_ARRAY = 0, 4, 8, 9  # gguf.h enum gguf_type; ggml F32 = 0


@dataclass(frozen=True)
class ImatrixEntry:
    """One weight matrix's statistics: ``sums`` float32 (n_mat, ne0), ``counts`` int64 (n_mat,)."""

    sums: np.ndarray
    counts: np.ndarray
    legacy: bool = False  # the old format: a zero call count keeps the values as they are

    def values(self) -> np.ndarray:
        """What the quantizer gets: sums / count per matrix, all ones for a matrix never seen
        (tools/quantize/quantize.cpp ``load_imatrix``), float32 (n_mat, ne0)."""
        out = self.sums.copy() if self.legacy else np.ones_like(self.sums, dtype=np.float32)
        seen = self.counts > 0
        out[seen] = self.sums[seen] / self.counts[seen, None].astype(np.float32)
        return out


@dataclass(frozen=True)
class Imatrix:
    entries: dict[str, ImatrixEntry]
    datasets: tuple[str, ...] = ()
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False

    def values(self) -> dict[str, np.ndarray]:
        """Entry name → flat float32 values, as ``llama_model_imatrix_data`` takes them."""
        return {name: e.values().reshape(-1) for name, e in self.entries.items()}


@dataclass(frozen=True)
class ImatrixKV:
    """What llama-quantize writes into a model quantized with an importance matrix
    (tools/quantize/quantize.cpp): ``quantize.imatrix.file``, ``.dataset`` (the first, when there
    is one), ``.entries_count`` and ``.chunks_count`` (when positive). Strings are cut at 127 bytes."""

    file: str
    dataset: str | None
    entries: int
    chunks: int


def imatrix_kv(path: str | Path, matrix: Imatrix) -> ImatrixKV:
    """What llama-quantize writes about the matrix into the output (quantize.cpp): the file as
    named — here only its name, so a shared model does not carry the user's folders — the first
    dataset, the entry count and the chunk count."""
    return ImatrixKV(file=Path(path).name, dataset=matrix.datasets[0] if matrix.datasets else None,
                     entries=len(matrix.entries), chunks=matrix.chunk_count)  # fmt: skip


def _bad(path: Path, why: str) -> CorruptModelError:
    return CorruptModelError(f"{path.name} is not a usable importance matrix: {why}.",
                             hint="Make one with `tailorlm imatrix MODEL --out FILE`, or with llama-imatrix.")  # fmt: skip


def read_imatrix(path: str | Path) -> Imatrix:
    """Read either format; raises ``CorruptModelError`` with the reason for a damaged file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise TailorError(f"Cannot read {path}: {exc.strerror}.") from None
    imatrix = _read_gguf(path) if magic == b"GGUF" else _read_legacy(path)
    for name, e in imatrix.entries.items():
        if not np.isfinite(e.sums).all():
            raise _bad(path, f"{name} has non-finite values")
        if (e.counts < 0).any():
            raise _bad(path, f"{name} has negative counts")
    return imatrix


def _read_gguf(path: Path) -> Imatrix:
    header = read_gguf_file(path)  # bounded and checked against the file's size
    meta = header.metadata
    by_name = {t.name: t for t in header.tensors}
    entries: dict[str, ImatrixEntry] = {}
    names = sorted(n[: -len(SUM_SUFFIX)] for n in by_name if n.endswith(SUM_SUFFIX))
    if not names:
        raise _bad(path, "it has no entries")
    with path.open("rb") as f:
        for name in names:
            sums_t, counts_t = by_name[name + SUM_SUFFIX], by_name.get(name + COUNT_SUFFIX)
            if counts_t is None:
                raise _bad(path, f"{name} has sums but no counts")
            if sums_t.type_name != "F32" or counts_t.type_name != "F32":
                raise _bad(path, f"{name}'s sums and counts must be F32")
            n_mat = counts_t.n_elements
            if n_mat == 0 or sums_t.n_elements % n_mat:
                raise _bad(path, f"{name} has {sums_t.n_elements} sums for {n_mat} counts")
            sums = _f32(f, header.data_offset_bytes + sums_t.offset_bytes, sums_t.n_elements)
            counts = _f32(f, header.data_offset_bytes + counts_t.offset_bytes, n_mat)
            if not np.isfinite(counts).all():
                raise _bad(path, f"{name} has non-finite counts")
            entries[name] = ImatrixEntry(sums.reshape(n_mat, -1), np.rint(counts).astype(np.int64))
    datasets = meta.get("imatrix.datasets", [])
    if isinstance(datasets, ArrayLength) or not all(isinstance(d, str) for d in datasets):
        raise _bad(path, "imatrix.datasets is not a short list of names")
    return Imatrix(entries, tuple(datasets), int(meta.get("imatrix.chunk_count", 0)),
                   int(meta.get("imatrix.chunk_size", 0)))  # fmt: skip


def _f32(f, offset: int, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    f.seek(offset)
    return np.frombuffer(f.read(4 * n), dtype="<f4", count=n).astype(np.float32)


def _read_legacy(path: Path) -> Imatrix:
    data = path.read_bytes() if path.stat().st_size < (1 << 31) else b""
    if not data:
        raise _bad(path, "it is empty or too large for the old format")
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise _bad(path, "it ends early")
        pos += n
        return data[pos - n : pos]

    (n_entries,) = struct.unpack("<i", take(4))
    if not 0 < n_entries <= MAX_ENTRIES:
        raise _bad(path, f"it claims {n_entries} entries")
    entries: dict[str, ImatrixEntry] = {}
    for _ in range(n_entries):
        (n_name,) = struct.unpack("<i", take(4))
        if not 0 < n_name <= MAX_LEGACY_NAME_BYTES:
            raise _bad(path, "an entry's name is too long")
        name = take(n_name).decode("utf-8", "replace")
        ncall, nval = struct.unpack("<ii", take(8))
        if nval < 1 or 4 * nval > len(data) - pos:
            raise _bad(path, f"{name} claims {nval} values")
        sums = np.frombuffer(take(4 * nval), dtype="<f4").astype(np.float32)
        # The old format stores value / count × ncall and one call count for all experts.
        entries[name] = ImatrixEntry(
            sums.reshape(1, -1), np.array([max(ncall, 0)], dtype=np.int64), legacy=True
        )
    chunk_count = 0
    datasets: tuple[str, ...] = ()
    if len(data) - pos >= 8:
        chunk_count, n_ds = struct.unpack("<ii", take(8))
        if 0 < n_ds <= len(data) - pos:
            datasets = (take(n_ds).decode("utf-8", "replace"),)
    return Imatrix(entries, datasets, chunk_count, 0, legacy=True)


# --- writing (GGUF, as llama-imatrix) ---------------------------------------------------------


def _gguf_str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _gguf_str(key) + struct.pack("<I", vtype) + payload


def _pad(n: int, alignment: int = DEFAULT_ALIGNMENT) -> int:
    return (alignment - n % alignment) % alignment


def write_imatrix(path: str | Path, imatrix: Imatrix) -> Path:
    """Write ``imatrix`` in llama-imatrix's GGUF layout; written to a temporary name and renamed,
    so a full disk or a crash leaves no half file under ``path``."""
    path = Path(path)
    names = sorted(imatrix.entries)
    tensors: list[tuple[str, tuple[int, ...], bytes]] = []
    for name in names:
        e = imatrix.entries[name]
        if len(name) + len(SUM_SUFFIX) > MAX_TENSOR_NAME_BYTES:
            raise TailorError(f"The tensor name {name!r} is too long for an importance-matrix file.")
        n_mat, ne0 = e.sums.shape
        tensors.append((name + SUM_SUFFIX, (ne0, n_mat), np.ascontiguousarray(e.sums, "<f4").tobytes()))
        tensors.append((name + COUNT_SUFFIX, (1, n_mat), e.counts.astype("<f4").tobytes()))
    kvs = [
        _kv("general.type", _GGUF_STRING, _gguf_str("imatrix")),
        _kv("imatrix.datasets", _GGUF_ARRAY,
            struct.pack("<IQ", _GGUF_STRING, len(imatrix.datasets)) + b"".join(map(_gguf_str, imatrix.datasets))),
        _kv("imatrix.chunk_count", _GGUF_U32, struct.pack("<I", imatrix.chunk_count)),
        _kv("imatrix.chunk_size", _GGUF_U32, struct.pack("<I", imatrix.chunk_size)),
    ]  # fmt: skip
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs))
    offset = 0
    for name, shape, raw in tensors:
        head += _gguf_str(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape)
        head += struct.pack("<IQ", _GGUF_F32, offset)
        offset += len(raw) + _pad(len(raw))
    head += bytes(_pad(len(head)))
    tmp = path.with_name(f".{path.name}.writing")
    try:
        with tmp.open("wb") as f:
            f.write(head)
            for _, _, raw in tensors:
                f.write(raw + bytes(_pad(len(raw))))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TailorError(f"Cannot write {path}: {exc.strerror}.", hint="Nothing was kept.") from None
    return path

"""Read the JSON header of a safetensors file (tensor names, dtypes, shapes) without the weights,
and the files of a checkpoint folder, which strangers wrote: each is checked as strictly as the
reference reader checks it, and no name in them may lead outside the folder.

Format: 8-byte little-endian header length N, then N bytes of JSON
``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``
(https://github.com/huggingface/safetensors#format). Works over any ``ByteSource`` so the hub
can read remote headers with range requests.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import CorruptModelError, ModelReadError
from app.core.files import NOT_REGULAR, not_a_regular_file
from app.core.model.gguf_header import ByteSource, FileSource

MAX_HEADER_BYTES = 100_000_000  # the reference reader's MAX_HEADER_SIZE (safetensors/src/tensor.rs)
# config.json and the index are a few KB to a few MB; more is not a checkpoint's JSON.
MAX_JSON_BYTES = 64 * 1024 * 1024
INDEX_NAME = "model.safetensors.index.json"
# Bits per element, as safetensors' Dtype::bitsize (safetensors/src/tensor.rs, the 0.8 crate's
# list); F4 and F6 pack several elements to a byte.
DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
              "F8_E5M2FNUZ": 8, "I16": 16,
              "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64,
              "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}  # fmt: skip


@dataclass(frozen=True)
class SafeTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]  # torch order: shape[0] is the output dimension
    n_bytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


class _Damaged(Exception):
    """Why a header is damaged; turned into one CorruptModelError naming the file."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys; a header naming a tensor twice is damaged."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Damaged(f"names {key[:80]!r} twice")
        out[key] = value
    return out


def _n_elements(shape: list[int], name: str) -> int:
    """The product, refused past 2**64 as the reference reader's checked multiply refuses it
    (and so that a header of a million huge dimensions is not a bignum computation)."""
    n = 1
    for d in shape:
        n *= d
        if n >= 2**64:
            raise _Damaged(f"tensor {name} has a shape too large to exist")
    return n


def _tensor(key: str, entry: Any) -> tuple[SafeTensor, int, int]:
    """One header entry → the tensor and its byte range, checked as the reference reader does."""
    name = repr(key[:80])  # for messages: a name is a stranger's string of any length
    if not isinstance(entry, dict):
        raise _Damaged(f"tensor {name} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _Damaged(f"tensor {name} has an unknown dtype {str(dtype)[:40]!r}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _Damaged(f"tensor {name} has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(x) is int for x in offsets)):
        raise _Damaged(f"tensor {name} has invalid data offsets")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise _Damaged(f"tensor {name} has offsets that run backwards ({begin} to {end})")
    n_bits = _n_elements(shape, name) * DTYPE_BITS[dtype]
    if n_bits % 8 or n_bits // 8 != end - begin:
        need = f"{n_bits / 8:,.1f}".removesuffix(".0")
        raise _Damaged(f"tensor {name} spans {end - begin:,} bytes but its shape and dtype need {need}")
    return SafeTensor(key, dtype, tuple(shape), end - begin), begin, end


def _parse_table(raw: bytes) -> tuple[list[SafeTensor], int]:
    """The header's tensors and where their data ends; the data must be covered exactly once."""
    try:
        table = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _Damaged(f"is not valid JSON ({exc.__class__.__name__})") from None
    except RecursionError:
        raise _Damaged("is JSON nested too deep") from None
    if not isinstance(table, dict):
        raise _Damaged("is not a JSON object")
    meta = table.pop("__metadata__", {})
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _Damaged("has __metadata__ that is not a map of strings")
    spans = sorted((_tensor(k, v) for k, v in table.items()), key=lambda t: (t[1], t[2]))
    data_end = 0
    for t, begin, end in spans:  # sorted by offset, each must start where the last one ended
        if begin != data_end:
            raise _Damaged(
                f"tensor {t.name[:80]!r} starts at byte {begin:,}, not {data_end:,} (overlap or gap)"
            )
        data_end = end
    return [t for t, _, _ in spans], data_end


def read_safetensors_header(source: ByteSource, *, name: str = "safetensors file") -> tuple[SafeTensor, ...]:
    """The tensors of one safetensors file; ``CorruptModelError`` names what is wrong."""
    raw_len = source.read(0, 8)
    if len(raw_len) < 8:
        raise CorruptModelError(f"{name} is empty or truncated.", hint="Download it again.")
    (n,) = struct.unpack("<Q", raw_len)
    size = source.size
    if n == 0 or n > MAX_HEADER_BYTES:
        raise CorruptModelError(f"{name} is not a valid safetensors file (header length {n:,}).")
    if size is not None and 8 + n > size:
        raise CorruptModelError(f"{name} is truncated inside its header.", hint="Download it again.")
    raw = source.read(8, n)
    if len(raw) < n:
        raise CorruptModelError(f"{name} is truncated inside its header.", hint="Download it again.")
    try:
        tensors, data_end = _parse_table(raw)
    except _Damaged as exc:
        raise CorruptModelError(
            f"{name} has a damaged header: it {exc}.", hint="Download it again."
        ) from None
    if size is not None and 8 + n + data_end > size:
        raise CorruptModelError(
            f"{name} is truncated: its tensors need {8 + n + data_end:,} bytes but it has {size:,}.",
            hint="Download it again.",
        )
    if size is not None and 8 + n + data_end < size:  # the reference reader refuses this too
        raise CorruptModelError(
            f"{name} is damaged: {size - 8 - n - data_end:,} bytes follow the last tensor.",
            hint="Download it again.",
        )
    return tuple(tensors)


def checkpoint_root(folder: Path) -> Path:
    """Where a checkpoint's files may resolve to: the folder itself, or for a Hugging Face cache
    snapshot (``models--org--name/snapshots/<commit>``, whose files link to ``../../blobs``) the
    repo's folder."""
    real = folder.resolve()
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        return real.parent.parent
    return real


def _refuse_outside_name(name: str) -> None:
    if not name or Path(name).is_absolute() or "\\" in name or ".." in Path(name).parts:
        raise ModelReadError(
            f"The checkpoint names a file outside its folder ({name[:200]!r}); it was not read.",
            hint="Use a checkpoint from a source you trust.",
        )


def checkpoint_file(folder: Path, name: str) -> Path:
    """``folder/name``, refused unless it is a regular file that stays inside the checkpoint:
    ``name`` comes from the folder's own files (the index), so it may be ``../x`` or absolute,
    and a link may point anywhere. A pipe is refused before it is opened: opening it would wait
    for a writer that may never come."""
    _refuse_outside_name(name)
    path = folder / name
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        if isinstance(exc, FileNotFoundError):
            raise CorruptModelError(
                f"The checkpoint is incomplete: {name} is missing.", hint="Download the missing files."
            ) from None
        raise ModelReadError(f"{path} cannot be read ({exc}).") from None
    if not real.is_relative_to(checkpoint_root(folder)):
        raise ModelReadError(
            f"{name} in the checkpoint links outside its folder (to {real}); it was not read.",
            hint="Use a checkpoint from a source you trust.",
        )
    if not stat.S_ISREG(mode):
        raise ModelReadError(f"{path} {NOT_REGULAR}; it was not read.")
    return real


def read_checkpoint_json(folder: Path, name: str) -> Any:
    """A checkpoint's JSON file (config.json, the index), bounded and parsed; one clear error."""
    path = checkpoint_file(folder, name)
    with path.open("rb") as f:
        raw = f.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise CorruptModelError(
            f"{folder / name} is larger than {MAX_JSON_BYTES // 2**20} MiB; not a checkpoint's JSON."
        )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptModelError(f"{folder / name} is not valid JSON ({exc}).") from None
    except RecursionError:
        raise CorruptModelError(f"{folder / name} is not valid JSON (nested too deep).") from None


def read_safetensors_file(path: Path) -> tuple[SafeTensor, ...]:
    """One local file; pipes and devices are refused before opening (opening a pipe blocks)."""
    if (reason := not_a_regular_file(path)) is not None:
        raise ModelReadError(f"{path} {reason}; it was not read.")
    with FileSource(path) as src:
        return read_safetensors_header(src, name=path.name)


def _index_shards(folder: Path) -> list[str]:
    """The shard names the index's ``weight_map`` points to (``{tensor: file}``)."""
    index = read_checkpoint_json(folder, INDEX_NAME)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    files = list(weight_map.values()) if isinstance(weight_map, dict) else []
    if not files or not all(isinstance(f, str) for f in files):
        raise CorruptModelError(
            f"{INDEX_NAME} is damaged: its weight_map is not a map of tensor names to files.",
            hint="Download it again.",
        )
    return sorted(set(files))


def checkpoint_tensors(folder: Path) -> tuple[SafeTensor, ...]:
    """All tensors of a (possibly sharded) safetensors checkpoint folder."""
    if os.path.lexists(folder / INDEX_NAME):
        names = _index_shards(folder)
    else:
        names = sorted(f.name for f in folder.glob("*.safetensors"))
    for name in names:  # before anything is looked up on the disk
        _refuse_outside_name(name)
    missing = [n for n in names if not os.path.lexists(folder / n)]
    if missing:
        raise CorruptModelError(
            f"The checkpoint is incomplete: {', '.join(missing[:3])} {'is' if len(missing) == 1 else 'are'} missing.",
            hint="Download the missing shards.",
        )
    tensors: list[SafeTensor] = []
    for name in names:
        path = checkpoint_file(folder, name)
        with FileSource(path) as src:
            tensors.extend(read_safetensors_header(src, name=name))
    return tuple(tensors)

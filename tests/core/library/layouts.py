"""Other tools' on-disk layouts (HF cache, LM Studio, Ollama) and slim model files, for the library tests.

The discovery test links the real model files. The others write "slim" copies: the real model's
metadata (minus the tokenizer) and tensor table, with the weights a sparse hole of the right size,
because parsing a 262k-token vocabulary costs ~0.4 s per header and the library only reads headers.
Every test passes its own ScanRoots, so no real folder is scanned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from app.core.library.registry import LibraryModel, ScanRoots
from app.core.model.gguf_header import ArrayLength, GGUFHeader

NO_ROOTS = ScanRoots(hf_cache=None)


def _gguf_type(value: Any) -> gguf.GGUFValueType:
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32 if 0 <= value < 2**32 else gguf.GGUFValueType.INT64
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    return gguf.GGUFValueType.STRING


def write_like(header: GGUFHeader, path: Path, *, part: int = 1, n_parts: int = 1) -> Path:
    """A slim GGUF with ``header``'s metadata and its share of the tensor table (split parts carry
    ``split.*`` keys, as llama.cpp's gguf-split writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch=header.architecture)
    for key, value in header.metadata.items() if part == 1 else []:
        skip = key.startswith("tokenizer.") or key == "general.architecture"
        if skip or isinstance(value, ArrayLength) or value == []:
            continue
        sub = _gguf_type(value[0]) if isinstance(value, list) else None
        w.add_key_value(key, value, gguf.GGUFValueType.ARRAY if sub else _gguf_type(value), sub_type=sub)
    if n_parts > 1:
        w.add_uint16("split.no", part - 1)
        w.add_uint16("split.count", n_parts)
        w.add_int32("split.tensors.count", len(header.tensors))
    per = -(-len(header.tensors) // n_parts)
    data = 0
    for t in header.tensors[(part - 1) * per : part * per]:
        qtype = gguf.GGMLQuantizationType[t.type_name]
        shape = gguf.quant_shape_to_byte_shape(tuple(reversed(t.shape)), qtype)
        w.add_tensor_info(t.name, shape, np.dtype(np.uint8), t.n_bytes, raw_dtype=qtype)
        data += -(-t.n_bytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with path.open("r+b") as f:  # sparse: the right size, no bytes written
        f.truncate(path.stat().st_size + 32 + data)
    return path


def link_file(src: Path, dst: Path) -> Path:
    """A hard link (a copy across file systems): deleting it never touches the real model."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return dst
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def hf_snapshot(cache: Path, repo: str, commit: str, files: dict[str, Path], *, main: bool = True) -> Path:
    """The hub cache layout: blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>, refs/main."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    for name, src in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(str(src).encode()).hexdigest()  # one blob per content
        if not blob.exists():
            link_file(src, blob)
        link = repo_dir / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir / "snapshots" / commit


def ollama_pull(root: Path, blob_src: Path, name: str, digest: str) -> Path:
    """What `ollama pull` leaves: a manifest naming layers by digest, and blobs/sha256-<hex>."""
    registry, namespace, model, tag = name.split("/")
    blob = link_file(blob_src, root / "blobs" / f"sha256-{digest}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": "sha256:" + "1" * 64,
        },
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "2" * 64, "size": 1},
        ],
    }
    path = root / "manifests" / registry / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return blob


def by_origin(models: list[LibraryModel]) -> dict[str, LibraryModel]:
    assert len({m.origin for m in models}) == len(models), [m.id for m in models]
    return {m.origin: m for m in models}

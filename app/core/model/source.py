"""Turn what the user typed — a GGUF path, a checkpoint folder, a catalog name, a Hub repo id —
into one :class:`ModelInfo`."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.errors import (
    CorruptModelError,
    MissingConfigError,
    ModelNotFoundError,
    ModelReadError,
)
from app.core.model import sanity
from app.core.model.gguf_header import GGUFHeader, join_split_parts, read_gguf_file
from app.core.model.info import ModelInfo, model_info_from_header

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_REPO_FILE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)/(?P<file>.+\.gguf)$", re.IGNORECASE)


def load_model(spec: str) -> ModelInfo:
    """Read a model description from wherever ``spec`` points. Raises ``ModelReadError`` subclasses."""
    path = Path(spec).expanduser()
    if path.is_file():
        return model_from_gguf(path)
    if path.is_dir():
        return model_from_checkpoint(path)
    from app.core.model.catalog import find_entry_or_none, suggest

    entry = find_entry_or_none(spec)
    if entry is not None:
        return model_from_catalog(entry)
    if _REPO_ID.match(spec) and not spec.endswith(".gguf"):
        return model_from_repo(spec)
    if m := _REPO_FILE.match(spec):
        return model_from_hub_gguf(m.group("repo"), m.group("file"))
    hint = suggest(spec)
    raise ModelNotFoundError(
        f"No model file, folder, catalog entry or Hub repo called {spec!r}.",
        hint=(f"Did you mean {hint}?" if hint else "Run `tailorlm catalog` to see the built-in models."),
    )


def model_from_gguf(path: Path) -> ModelInfo:
    """A local GGUF; for split files (``-00001-of-00003.gguf``) every part's tensors are joined."""
    header = read_gguf_file(path)
    m = _SPLIT.match(path.name)
    # llama.cpp names split parts -%05d-of-%05d (llama_split_path): at most 99,999 of them
    n_split = sanity.whole(header.metadata.get("split.count") or 1, "split.count", 1, 99_999)
    if n_split > 1 and m:
        parts = [header]
        for i in range(1, n_split + 1):
            part = path.with_name(f"{m.group('stem')}-{i:05d}-of-{n_split:05d}.gguf")
            if part == path:
                continue
            if not part.exists():
                raise CorruptModelError(
                    f"Split model part {part.name} is missing.", hint="Download every part of the model."
                )
            parts.append(read_gguf_file(part))
        header = join_split_parts(parts, sum(h.file_size_bytes or 0 for h in parts))
    if header.metadata.get("general.type") == "adapter":
        raise ModelReadError(
            f"{path.name} is a LoRA adapter, not a model.", hint="Choose the base model file."
        )
    info = model_info_from_header(header, source=str(path), source_kind="gguf", name=_gguf_name(header, path))
    return info if n_split > 1 else replace(info, data_offset_bytes=header.data_offset_bytes)


def _gguf_name(header: GGUFHeader, path: Path) -> str:
    name = header.metadata.get("general.name")
    return str(name) if name else path.stem


def read_config(folder: Path) -> dict[str, Any]:
    """config.json of a checkpoint folder, read as an untrusted file (see ``read_checkpoint_json``)."""
    from app.core.model.safetensors_header import read_checkpoint_json

    cfg_path = folder / "config.json"
    if not os.path.lexists(cfg_path):
        ggufs = sorted(folder.glob("*.gguf"))
        hint = (f"This folder holds GGUF files; choose one, e.g. {ggufs[0].name}." if ggufs
                else "Choose a Hugging Face checkpoint folder (with config.json) or a .gguf file.")  # fmt: skip
        raise MissingConfigError(
            f"{folder} has no config.json, so it is not a Hugging Face checkpoint.", hint=hint
        )
    config = read_checkpoint_json(folder, "config.json")
    if not isinstance(config, dict):
        raise CorruptModelError(f"{cfg_path} is not a JSON object.")
    return config


def _checkpoint_dtype(config: dict[str, Any], dtypes: set[str]) -> str:
    for d in ("BF16", "F16", "F32"):
        if d in dtypes:
            return d
    torch_dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    return {"float16": "F16", "float32": "F32"}.get(torch_dtype, "BF16")


def model_from_checkpoint(folder: Path) -> ModelInfo:
    """A local Hugging Face checkpoint: config.json for the shapes, safetensors headers for the dtype."""
    from app.core.model.safetensors_header import checkpoint_tensors

    return _from_config(read_config(folder), checkpoint_tensors(folder), str(folder), "hf_dir", folder.name)


def _from_config(config: dict[str, Any], st: tuple[Any, ...], source: str, kind: str, name: str) -> ModelInfo:
    """ModelInfo from config.json, checked against the checkpoint's safetensors headers when we have them."""
    from app.core.model.hf_arch import header_from_hf_config

    dtype = _checkpoint_dtype(config, {t.dtype for t in st})
    header = header_from_hf_config(config, dtype=dtype)
    info = model_info_from_header(header, source=source, source_kind=kind, name=name)
    if st:
        ckpt_params = sum(t.n_elements for t in st)
        # A checkpoint with a vision tower or extra heads holds more than the text model we run.
        if ckpt_params < 0.97 * info.n_params:
            raise CorruptModelError(
                f"The checkpoint's safetensors hold {ckpt_params:,} parameters but its config.json "
                f"describes {info.n_params:,}: files are missing or the config does not match."
            )
    return replace(info, file_type=dtype, file_size_bytes=sum(t.n_bytes for t in st) or None)


# A shard's header is two small range requests; the Hub answers each in well under a second, so
# half a timeout per shard (on top of one header's own deadline) is plenty for all of them.
SHARD_TIMEOUTS = 0.5
# Llama 3.1 405B, the most sharded checkpoint we know, has 191 shards; more is not a checkpoint.
MAX_SHARDS = 1000
# A header entry is ~150 bytes: 32 MiB describes 200,000+ tensors, where a real shard's header is
# a few hundred KB (the reference reader's own cap, 100 MB, is for local files).
MAX_REMOTE_SAFETENSORS_HEADER_BYTES = 32 * 2**20


def _remote_safetensors(repo_id: str) -> tuple[Any, ...]:
    """The tensors of a Hub checkpoint from its safetensors headers, read with range requests
    (the 8-byte length, then the JSON table: a few hundred KB per shard, no weights), all by one
    deadline."""
    from app.core.hub.api import DEADLINE_TIMEOUTS, list_tree
    from app.core.hub.http import hub_timeout_s
    from app.core.hub.names import hostile
    from app.core.model.remote import HubFileSource
    from app.core.model.safetensors_header import read_safetensors_header

    # the top level, where transformers looks
    shards = sorted(
        f.path for f in list_tree(repo_id, "main", recursive=False) if f.path.endswith(".safetensors")
    )
    if len(shards) > MAX_SHARDS:
        raise hostile(f"{len(shards):,} safetensors files in {repo_id}")
    timeout = hub_timeout_s()
    deadline = time.monotonic() + timeout * (DEADLINE_TIMEOUTS + SHARD_TIMEOUTS * len(shards))
    tensors: list[Any] = []
    for shard in shards:
        src = HubFileSource(
            repo_id, shard, deadline=deadline, max_bytes=8 + MAX_REMOTE_SAFETENSORS_HEADER_BYTES
        )
        tensors.extend(read_safetensors_header(src, name=f"{repo_id}/{shard}"))
    return tuple(tensors)


def model_from_hub_gguf(repo_id: str, filename: str) -> ModelInfo:
    """A GGUF on the Hub, read with range requests: its header only (a few MB), no weights."""
    from app.core.hub.names import check_repo_id
    from app.core.model.remote import read_remote_gguf_header

    check_repo_id(repo_id)
    header, _ = read_remote_gguf_header(repo_id, filename)
    return model_info_from_header(header, source=f"{repo_id}/{filename}", source_kind="hf_gguf",
                                  name=_gguf_name(header, Path(filename)))  # fmt: skip


def model_from_catalog(entry: Any) -> ModelInfo:
    from app.core.model.hf_arch import header_from_hf_config

    header = header_from_hf_config(entry.config, dtype="BF16")
    info = model_info_from_header(header, source=entry.id, source_kind="catalog", name=entry.name)
    return replace(info, file_type="BF16")


def model_from_repo(repo_id: str) -> ModelInfo:
    """A Hub repo: its config.json (a few KB) and its safetensors headers (range requests), through
    our own bounded client (``app.core.hub.api``); no weights are fetched."""
    from app.core.hub.api import repo_file
    from app.core.hub.names import check_repo_id

    check_repo_id(repo_id)
    raw = repo_file(repo_id, "config.json")
    if raw is None:
        from app.core.model.catalog import find_by_gguf_repo

        entry = find_by_gguf_repo(repo_id)
        if entry is not None:
            return model_from_catalog(entry)
        raise ModelReadError(
            f"{repo_id} has no config.json (a GGUF-only repo).",
            hint="Download one of its .gguf files and give its path, or name the original model repo.",
        )
    try:
        config = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptModelError(f"{repo_id}'s config.json is not valid JSON ({str(exc)[:120]}).") from None
    except RecursionError:
        raise CorruptModelError(f"{repo_id}'s config.json is not valid JSON (nested too deep).") from None
    if not isinstance(config, dict):
        raise CorruptModelError(f"{repo_id}'s config.json is not a JSON object.")
    return _from_config(config, _remote_safetensors(repo_id), repo_id, "hf_repo", repo_id)

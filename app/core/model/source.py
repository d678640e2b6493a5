"""Turn what the user typed — a GGUF path, a checkpoint folder, a catalog name, a Hub repo id —
into one :class:`ModelInfo`."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.errors import (
    CorruptModelError,
    HubError,
    MissingConfigError,
    ModelNotFoundError,
    ModelReadError,
)
from app.core.hub.http import hub_endpoint
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
    n_split = int(header.metadata.get("split.count", 1) or 1)
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
    return model_info_from_header(header, source=str(path), source_kind="gguf", name=_gguf_name(header, path))


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


def _remote_safetensors(repo_id: str) -> tuple[Any, ...]:
    """The tensors of a Hub checkpoint from its safetensors headers, read with range requests
    (the 8-byte length, then the JSON table: a few hundred KB per shard, no weights)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    from app.core.model.remote import HubFileSource
    from app.core.model.safetensors_header import read_safetensors_header

    try:
        tree = HfApi(endpoint=hub_endpoint()).list_repo_tree(
            repo_id
        )  # the top level, where transformers looks
        shards = sorted(e.path for e in tree if isinstance(e, RepoFile) and e.path.endswith(".safetensors"))
    except OSError:
        return ()  # the listing is a cross-check; config.json alone still sizes the model
    tensors: list[Any] = []
    for shard in shards:
        tensors.extend(read_safetensors_header(HubFileSource(repo_id, shard), name=f"{repo_id}/{shard}"))
    return tuple(tensors)


def model_from_hub_gguf(repo_id: str, filename: str) -> ModelInfo:
    """A GGUF on the Hub, read with range requests: its header only (a few MB), no weights."""
    from app.core.model.remote import read_remote_gguf_header

    check_reachable(hub_endpoint())
    header, _ = read_remote_gguf_header(repo_id, filename)
    return model_info_from_header(header, source=f"{repo_id}/{filename}", source_kind="hf_gguf",
                                  name=_gguf_name(header, Path(filename)))  # fmt: skip


def model_from_catalog(entry: Any) -> ModelInfo:
    from app.core.model.hf_arch import header_from_hf_config

    header = header_from_hf_config(entry.config, dtype="BF16")
    info = model_info_from_header(header, source=entry.id, source_kind="catalog", name=entry.name)
    return replace(info, file_type="BF16")


def check_reachable(endpoint: str) -> None:
    """Fail at once, not after a minute of retries, when the Hub's host name does not resolve."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        socket.getaddrinfo(url.hostname or "", url.port or (443 if url.scheme == "https" else 80))
    except OSError:
        raise HubError(
            f"Cannot reach {url.hostname} (no network?).",
            hint="Use a local .gguf file, a checkpoint folder or a catalog name offline.",
        ) from None


def model_from_repo(repo_id: str) -> ModelInfo:
    """A Hub repo: its config.json (a few KB) through huggingface_hub and its safetensors headers
    with range requests; no weights are fetched."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
        from huggingface_hub.utils import logging as hf_logging
    except ImportError as exc:  # pragma: no cover - a dependency
        raise HubError("huggingface_hub is not installed.") from exc
    check_reachable(hub_endpoint())
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # its retry warnings are not for our users; we say it once
    try:
        cfg_file = hf_hub_download(repo_id, "config.json", endpoint=hub_endpoint())
    except LocalEntryNotFoundError:
        raise HubError(
            f"Could not reach the Hugging Face Hub for {repo_id}, and it is not in the local cache.",
            hint="Check the connection, or use a local file or a catalog name offline.",
        ) from None
    except GatedRepoError:
        raise HubError(
            f"{repo_id} is gated: accept its license on the Hub and log in.",
            hint="Set HF_TOKEN or run `hf auth login`.",
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(
            f"The Hub has no repo {repo_id!r} (or it is private).", hint="Check the name, or set HF_TOKEN."
        ) from None
    except EntryNotFoundError:
        from app.core.model.catalog import find_by_gguf_repo

        entry = find_by_gguf_repo(repo_id)
        if entry is not None:
            return model_from_catalog(entry)
        raise ModelReadError(
            f"{repo_id} has no config.json (a GGUF-only repo).",
            hint="Download one of its .gguf files and give its path, or name the original model repo.",
        ) from None
    except OSError as exc:
        raise HubError(
            f"Could not reach the Hugging Face Hub for {repo_id} ({exc.__class__.__name__}).",
            hint="Check the connection, or use a local file or a catalog name offline.",
        ) from None
    try:
        config = json.loads(Path(cfg_file).read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise CorruptModelError(f"{repo_id}'s config.json is not valid JSON ({exc}).") from None
    except RecursionError:
        raise CorruptModelError(f"{repo_id}'s config.json is not valid JSON (nested too deep).") from None
    if not isinstance(config, dict):
        raise CorruptModelError(f"{repo_id}'s config.json is not a JSON object.")
    return _from_config(config, _remote_safetensors(repo_id), repo_id, "hf_repo", repo_id)

"""The name the advisor shows for a model, and the catalog model a file is a quantization of.

A GGUF's ``general.name`` is whatever its converter wrote ("Smollm2 135M 8k Lc100K Mix1 Ep2"), so
the advisor prefers, in order: the catalog's name when the file is a catalog model (same shapes,
same family, same instruct/base kind), the file's own name without its quantization tag
("SmolLM2-135M-Instruct.Q4_1.gguf" → "SmolLM2 135M Instruct"), and only then ``general.name``.
Knowing the catalog model also tells the advisor where another quantization can be downloaded.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from app.core.model.catalog import CatalogEntry, find_by_gguf_repo, find_entry_or_none, load_catalog
from app.core.model.info import FILE_TYPES, ModelInfo

_QUANT_NAMES = sorted(
    {*FILE_TYPES.values(), "Q4_K", "Q5_K", "Q3_K", "Q6_K_L", "Q8_K_XL"}, key=len, reverse=True
)
# A quantization tag at the end of a file stem: "-Q4_K_M", ".Q4_1", "_q8_0", "-UD-Q4_K_XL" …
_QUANT_TAIL = re.compile(
    r"[-._](?:UD[-_])?(?:" + "|".join(re.escape(q) for q in _QUANT_NAMES) + r")\w*$", re.I
)
_SPLIT_TAIL = re.compile(r"-\d{5}-of-\d{5}$")  # llama.cpp's split-file suffix
_HASHLIKE = re.compile(r"(?:sha256[-_:])?[0-9a-f]{32,}", re.I)  # Ollama's blobs, HF cache blobs
# Words that mark a chat-tuned model in a file or model name.
_INSTRUCT_WORDS = re.compile(r"(?:^|[^a-z])(?:instruct|it|chat)(?:[^a-z]|$)")


def display_name(model: ModelInfo) -> str:
    """A human name for ``model``: the catalog's, else the file's, else the GGUF's own."""
    if model.source_kind == "catalog":
        return model.name
    entry = catalog_entry_for(model)
    if entry is not None:
        return entry.name
    if model.source_kind in ("gguf", "hf_gguf"):
        from_file = name_from_file(model.source)
        if from_file is not None:
            # "gemma 3 270m" from the file, "Gemma 3 270m" in the header: the header's casing
            if from_file.islower() and _squash(from_file) == _squash(model.name):
                return model.name
            return from_file
    return model.name


def name_from_file(path: str) -> str | None:
    """The file's stem without extension, split suffix and quantization tag, separators as spaces;
    None when the name says nothing (a content hash)."""
    stem = PurePosixPath(path.replace("\\", "/")).name
    stem = re.sub(r"\.gguf$", "", stem, flags=re.I)
    stem = _SPLIT_TAIL.sub("", stem)
    stem = _QUANT_TAIL.sub("", stem)
    if not stem or _HASHLIKE.fullmatch(stem):
        return None
    words = re.sub(r"[-_\s]+", " ", stem).strip()
    return words or None


def catalog_entry_for(model: ModelInfo) -> CatalogEntry | None:
    """The catalog model that ``model`` is a copy or quantization of, or None.

    A catalog id or original repo is looked up; a Hub GGUF by its repo; anything else must have
    the same shapes (layers, width, FFN width, heads), name the same family, and be the same kind
    (chat-tuned or base) — a base model and its instruct version share every shape.
    """
    direct = find_entry_or_none(model.source)
    if direct is not None:
        return direct
    if model.source_kind == "hf_gguf":
        parts = model.source.split("/")
        by_repo = find_by_gguf_repo("/".join(parts[:2])) if len(parts) > 2 else None
        if by_repo is not None:
            return by_repo
    meta = model.metadata or {}
    haystack = " ".join(
        str(x) for x in (PurePosixPath(model.source).name, model.name, meta.get("general.basename"),
                         meta.get("general.finetune")) if x
    ).lower()  # fmt: skip
    candidates = [
        e for e in load_catalog()
        if _same_shape(e.config, model) and _squash(e.family) in _squash(haystack)
        and (not _is_instruct(e) or _INSTRUCT_WORDS.search(haystack))
    ]  # fmt: skip
    # Phi-3 mini and Phi-3.5 mini share every shape and the family: the id in the name decides.
    named = [e for e in candidates if _squash(e.id) in _squash(haystack)]
    return next(iter(named or candidates), None)


def _same_shape(config: dict[str, Any], model: ModelInfo) -> bool:
    text = config.get("text_config")
    cfg: dict[str, Any] = text if isinstance(text, dict) else config
    heads = cfg.get("num_attention_heads")
    return (
        cfg.get("num_hidden_layers") == model.n_layer
        and cfg.get("hidden_size") == model.n_embd
        and cfg.get("intermediate_size") == model.n_ff
        and (heads is None or (bool(model.n_head) and heads == max(model.n_head)))
    )


def _is_instruct(entry: CatalogEntry) -> bool:
    return bool(_INSTRUCT_WORDS.search(f"{entry.id} {entry.name}".lower()))


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "", text.lower())

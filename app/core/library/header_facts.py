"""What the library knows of a model from its GGUF header, cached by (path, size, mtime).

A rescan then costs a ``stat`` per file: a header is read again only when a file changed, and a
file that is not a readable GGUF is remembered as such instead of being parsed at every scan.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.core.errors import TailorError
from app.core.hub.files import quant_from_name
from app.core.model.source import model_from_gguf

log = logging.getLogger(__name__)

Meta = dict[str, dict[str, Any]]  # stat_key() → describe()'s facts, or {"error": message}

_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$", re.IGNORECASE)
# What a damaged or unreadable file can raise through the header parser; a scan skips such files.
_READ_ERRORS = (TailorError, OSError, ValueError, TypeError)


def describe(parts: Sequence[Path]) -> dict[str, Any]:
    """Header facts of a model (split parts are joined by model_from_gguf); never reads weights."""
    info = model_from_gguf(parts[0])
    ftype = info.file_type if info.file_type and not info.file_type.startswith("type ") else None
    name = (info.metadata or {}).get("general.name")
    return {
        "quant": ftype or quant_from_name(parts[0].name),
        "arch": info.architecture,
        "name": str(name) if name else None,
        "n_params": info.n_params,
        "n_layers": info.n_layer,
        "context_length": info.n_ctx_train or None,
    }


def stat_key(parts: Sequence[Path]) -> tuple[str, int]:
    """The cache key (a changed part means a new key) and the model's total size."""
    stats = [(p.resolve(), p.stat()) for p in parts]
    key = "\n".join(f"{r}|{s.st_size}|{s.st_mtime_ns}" for r, s in stats)
    return key, sum(s.st_size for _, s in stats)


def file_stem(name: str) -> str:
    """``model-00001-of-00003.gguf`` → ``model``: a name for a model whose header names none."""
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    return _SPLIT_SUFFIX.sub("", stem)


def cached_facts(meta: Meta, cache: Meta, parts: Sequence[Path], label: str | None) -> dict[str, Any] | None:
    """Size and header facts, from ``meta`` while the files are unchanged (kept in ``cache`` for
    the next scan); None, with a warning, for a file that is not a readable GGUF."""
    try:
        key, size = stat_key(parts)
        facts = meta.get(key)
        if facts is None:
            try:
                facts = describe(parts)
            except _READ_ERRORS as exc:  # remembered, so a bad file is not parsed at every scan
                facts = {"error": exc.user_message() if isinstance(exc, TailorError) else str(exc)}
        cache[key] = facts
    except OSError as exc:
        facts = {"error": str(exc)}
    if "error" in facts:
        log.warning("Skipping %s: %s", parts[0], facts["error"])
        return None
    return {**facts, "size_bytes": size, "name": facts.get("name") or label or file_stem(parts[0].name)}

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

from app.core.advice.naming import display_name
from app.core.errors import ModelReadError, TailorError
from app.core.hub.files import quant_from_name
from app.core.library.scan import ScanProblem, file_problem
from app.core.model.source import model_from_gguf

log = logging.getLogger(__name__)

Meta = dict[str, dict[str, Any]]  # stat_key() → describe()'s facts, or {"error": message}

_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$", re.IGNORECASE)
FACTS_VERSION = "2|"  # in every cache key: facts cached by an older describe() are read again
MAX_REASON_CHARS = 300  # a reason is one line in `tailorlm list`; a stranger's file may make it long


def describe(parts: Sequence[Path]) -> dict[str, Any]:
    """Header facts of a model (split parts are joined by model_from_gguf); never reads weights.
    Pipes and devices are refused before anything is opened: opening a pipe waits for a writer."""
    for part in parts:
        if (reason := file_problem(part)) is not None:
            raise ModelReadError(f"{part} {reason}.")
    info = model_from_gguf(parts[0])
    ftype = info.file_type if info.file_type and not info.file_type.startswith("type ") else None
    return {
        "quant": ftype or quant_from_name(parts[0].name),
        "arch": info.architecture,
        "name": display_name(info) or None,  # the catalog's or the file's name, as the Advisor says it
        "n_params": info.n_params,
        "n_layers": info.n_layer,
        "context_length": info.n_ctx_train or None,
    }


def stat_key(parts: Sequence[Path]) -> tuple[str, int]:
    """The cache key (a changed part means a new key) and the model's total size."""
    stats = [(p.resolve(), p.stat()) for p in parts]
    key = FACTS_VERSION + "\n".join(f"{r}|{s.st_size}|{s.st_mtime_ns}" for r, s in stats)
    return key, sum(s.st_size for _, s in stats)


def file_stem(name: str) -> str:
    """``model-00001-of-00003.gguf`` → ``model``: a name for a model whose header names none."""
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    return _SPLIT_SUFFIX.sub("", stem)


def _reason(exc: Exception) -> str:
    text = (
        exc.user_message()
        if isinstance(exc, TailorError)
        else f"could not be read ({type(exc).__name__}: {exc})"
    )
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def cached_facts(
    meta: Meta, cache: Meta, parts: Sequence[Path], label: str | None
) -> dict[str, Any] | ScanProblem:
    """Size and header facts, from ``meta`` while the files are unchanged (kept in ``cache`` for
    the next scan); a ``ScanProblem``, logged, for files that are not a readable GGUF."""
    try:
        key, size = stat_key(parts)
    except (OSError, RuntimeError) as exc:  # RuntimeError: resolve() meets a symlink loop (Python < 3.13)
        return _skipped(parts[0], _reason(exc))
    facts = meta.get(key)
    if facts is None:
        try:
            facts = describe(parts)
        # A stranger's file: whatever the parser raises on it, one bad file must not end the scan.
        except Exception as exc:
            facts = {"error": _reason(exc)}  # remembered, so a bad file is not parsed at every scan
    cache[key] = facts
    if "error" in facts:
        return _skipped(parts[0], str(facts["error"]))
    return {**facts, "size_bytes": size, "name": facts.get("name") or label or file_stem(parts[0].name)}


def _skipped(path: Path, reason: str) -> ScanProblem:
    log.warning("Skipping %s: %s", path, reason)
    return ScanProblem(path, reason)

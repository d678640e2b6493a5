"""The built-in catalog of popular open models (``catalog.json``, shipped as package data).

Each entry carries the model's real ``config.json`` (the older entries only the subset that
:func:`app.core.model.hf_arch.header_from_hf_config` needs; multimodal ones without their vision and
audio towers), so the advisor can size every catalog model offline, before anything is downloaded.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from app.core.errors import ModelNotFoundError

CATALOG_FILE = "catalog.json"
_REQUIRED = ("id", "name", "family", "params_b", "hf_repo", "gguf_repos", "license", "released", "config")


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog model. ``params_b`` counts every parameter (all experts of a MoE)."""

    id: str
    name: str
    family: str
    params_b: float
    hf_repo: str
    gguf_repos: tuple[str, ...]
    license: str
    released: str  # YYYY-MM
    notes: str
    config: dict[str, Any] = field(hash=False, compare=False, repr=False)
    active_params_b: float | None = None  # MoE only: parameters used per token

    @property
    def is_moe(self) -> bool:
        return self.active_params_b is not None


def _entry(raw: Any, index: int) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"catalog.json entry {index} is not an object")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"catalog.json entry {index} ({raw.get('id', '?')}) lacks {', '.join(missing)}")
    active = raw.get("active_params_b")
    return CatalogEntry(
        id=str(raw["id"]),
        name=str(raw["name"]),
        family=str(raw["family"]),
        params_b=float(raw["params_b"]),
        hf_repo=str(raw["hf_repo"]),
        gguf_repos=tuple(str(r) for r in raw["gguf_repos"]),
        license=str(raw["license"]),
        released=str(raw["released"]),
        notes=str(raw.get("notes", "")),
        config=dict(raw["config"]),
        active_params_b=None if active is None else float(active),
    )


@cache
def load_catalog() -> tuple[CatalogEntry, ...]:
    """Every catalog entry, in file order. Read through importlib.resources, so it works from a wheel."""
    text = resources.files("app.core.model").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    raw = json.loads(text)
    if not isinstance(raw, list):
        raise ValueError("catalog.json must hold a list of models")
    return tuple(_entry(item, i) for i, item in enumerate(raw))


def _keys(entry: CatalogEntry) -> tuple[str, ...]:
    return (entry.id.lower(), entry.name.lower(), entry.hf_repo.lower())


def find_entry_or_none(name: str) -> CatalogEntry | None:
    """The entry whose id, name or original Hub repo is ``name`` (any case), else None."""
    wanted = name.strip().lower()
    return next((e for e in load_catalog() if wanted in _keys(e)), None)


def find_by_gguf_repo(repo_id: str) -> CatalogEntry | None:
    """The entry that lists ``repo_id`` among its GGUF repos (any case), else None."""
    wanted = repo_id.strip().lower()
    return next((e for e in load_catalog() if wanted in (r.lower() for r in e.gguf_repos)), None)


def _squash(text: str) -> str:
    """Lower case without separators, so "Qwen 2.5 7B" and "qwen2.5-7b" compare equal."""
    return re.sub(r"[\s._/-]+", "", text.lower())


def suggestions(name: str, n: int = 3) -> list[str]:
    """Catalog ids closest to ``name``, best first: containing it, containing its words, spelled alike."""
    by_key: dict[str, str] = {}
    for e in load_catalog():
        for key in _keys(e):
            by_key.setdefault(_squash(key), e.id)
    wanted = _squash(name)
    if not wanted:
        return []
    words = [w for w in re.split(r"[\s._/-]+", name.lower()) if w]
    ranked = [by_key[k] for k in by_key if wanted in k]
    ranked += [by_key[k] for k in by_key if all(w in k for w in words)]
    ranked += [by_key[k] for k in difflib.get_close_matches(wanted, list(by_key), n=n * 3)]
    out: list[str] = []
    for model_id in ranked:
        if model_id not in out:
            out.append(model_id)
    return out[:n]


def suggest(name: str) -> str | None:
    """One line naming the nearest catalog ids, for a "Did you mean …?" hint; None if nothing is close."""
    close = suggestions(name)
    return " or ".join(close) if close else None


def find_entry(name: str) -> CatalogEntry:
    """Like :func:`find_entry_or_none`, but raises ``ModelNotFoundError`` with the nearest ids."""
    entry = find_entry_or_none(name)
    if entry is not None:
        return entry
    hint = suggest(name)
    raise ModelNotFoundError(
        f"The built-in catalog has no model called {name!r}.",
        hint=f"Did you mean {hint}?" if hint else "Run `tailorlm catalog` to list the built-in models.",
    )

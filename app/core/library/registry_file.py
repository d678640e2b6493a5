"""``library.json``: what it holds, and how the GUI and the CLI change it without losing a write.

Every change is load-modify-save under a file lock; the file is replaced atomically, so a reader
sees the old file or the new one; a damaged file is set aside, never deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.core.errors import LibraryError
from app.core.library.entry import LibraryModel
from app.core.library.header_facts import Meta

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass
class RegistryData:
    """What library.json holds."""

    models: dict[str, LibraryModel] = field(default_factory=dict)  # registered, by id
    discovered: dict[str, LibraryModel] = field(default_factory=dict)  # the last scan's finds, by id
    folders: list[str] = field(default_factory=list)
    hidden: set[str] = field(
        default_factory=set
    )  # resolved paths of removed files a scan must not bring back
    meta: Meta = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def dump(models: dict[str, LibraryModel]) -> list[dict[str, Any]]:
            return [{**asdict(m), "paths": [str(p) for p in m.paths]} for m in models.values()]

        return {
            "version": SCHEMA_VERSION,
            "models": dump(self.models),
            "discovered": dump(self.discovered),
            "folders": self.folders,
            "hidden": sorted(self.hidden),
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RegistryData:
        known = {f.name for f in fields(LibraryModel)}  # a newer version's extra fields are dropped

        def load(entries: list[dict[str, Any]]) -> dict[str, LibraryModel]:
            models = {}
            for d in entries:
                fields_ = {k: v for k, v in d.items() if k in known}
                model = LibraryModel(**{**fields_, "paths": tuple(Path(p) for p in d["paths"])})
                if not model.paths or not isinstance(model.id, str):
                    raise ValueError(f"a model entry has no paths or id: {d}")
                models[model.id] = model
            return models

        return cls(
            load(raw.get("models", [])),
            load(raw.get("discovered", [])),
            [str(f) for f in raw.get("folders", [])],
            {str(h) for h in raw.get("hidden", [])},
            {str(k): dict(v) for k, v in raw.get("meta", {}).items()},
        )

    def visible(self) -> list[LibraryModel]:
        # A scan skips registered and hidden files and Library.add() takes a file over from
        # `discovered`, so no file is in both maps.
        return sorted([*self.models.values(), *self.discovered.values()], key=lambda m: m.id.lower())


@contextlib.contextmanager
def open_registry(path: Path, *, write: bool) -> Iterator[RegistryData]:
    """Load under the lock and, when the caller raised nothing and ``write``, save before unlocking."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path.with_name(path.name + ".lock")):
        reg = _load(path)
        yield reg
        if write:
            _save(path, reg)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive between processes (GUI and CLI) and threads (each call opens its own handle)."""
    with open(path, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # retries for ~10 s, then OSError
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
            yield  # closing the handle releases the lock


def _load(path: Path) -> RegistryData:
    try:
        return RegistryData.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return RegistryData()
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        backup = path.with_name(f"{path.name}.corrupt-{time.time_ns()}")
        with contextlib.suppress(OSError):
            path.replace(backup)  # set aside for the user, not lost
        log.warning("Could not read the model library %s (%s); moved it to %s.", path, exc, backup)
        return RegistryData()


def _save(path: Path, reg: RegistryData) -> None:
    """A temp file beside the registry, renamed over it: a reader sees the old file or the new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(reg.to_json(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise LibraryError(
            f"Could not save the model library to {path} ({exc}).",
            hint="Check that the folder is writable and the disk is not full.",
        ) from None

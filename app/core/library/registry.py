"""The user's models: a registry in the data dir, plus the GGUFs other tools already keep on disk.

Models are referenced where they are — the Hugging Face cache, LM Studio's folders, Ollama's blob
store, folders the user names — and never copied. Headers are read once and cached by (path, size,
mtime), so a rescan costs a ``stat`` per file. The GUI and the CLI may both change the registry, so
every change is load-modify-save under a file lock and the JSON file is replaced atomically; a
damaged file is set aside, never deleted.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.errors import ModelNotFoundError, TailorError
from app.core.hub.files import quant_from_name
from app.core.library.scan import Found, ScanRoots, discover
from app.core.model.source import model_from_gguf

__all__ = ["Library", "LibraryError", "LibraryModel", "ScanRoots"]

log = logging.getLogger(__name__)

REGISTRY_FILENAME = "library.json"
SCHEMA_VERSION = 1
ORIGINS = ("tailorlm", "hf_cache", "lmstudio", "ollama", "folder", "file")
_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$", re.IGNORECASE)
# What a damaged or unreadable file can raise through the header parser; a scan skips such files.
_READ_ERRORS = (TailorError, OSError, ValueError, TypeError)
_Meta = dict[str, dict[str, Any]]  # _stat_key → _describe()'s facts, or {"error": message}


class LibraryError(TailorError):
    """The library file cannot be written, or a model cannot be removed as asked."""


@dataclass(frozen=True)
class LibraryModel:
    """One model in the library: a GGUF file, or every part of a split one."""

    id: str  # short and typable; unique in the library and kept across scans
    paths: tuple[Path, ...]  # part order
    origin: str  # one of ORIGINS
    owned: bool  # TailorLM created the files (a download, a conversion), so it may delete them
    size_bytes: int
    repo: str | None = None
    quant: str | None = None
    arch: str | None = None
    name: str | None = None
    n_params: int | None = None
    n_layers: int | None = None
    context_length: int | None = None
    sha256: str | None = None
    added: float = 0.0  # time.time() when registered or first found
    provenance: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def path(self) -> Path:
        """The file llama.cpp loads (it finds the other parts of a split model itself)."""
        return self.paths[0]

    @property
    def present(self) -> bool:
        """False once a part was moved or deleted behind our back; the entry stays until removed."""
        return all(p.is_file() for p in self.paths)


def _describe(parts: Sequence[Path]) -> dict[str, Any]:
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


def _stat_key(parts: Sequence[Path]) -> tuple[str, int]:
    """The metadata cache key (a changed part means a new key) and the model's total size."""
    stats = [(p.resolve(), p.stat()) for p in parts]
    key = "\n".join(f"{r}|{s.st_size}|{s.st_mtime_ns}" for r, s in stats)
    return key, sum(s.st_size for _, s in stats)


def _key(path: Path) -> str:
    """One file reached through several links (HF snapshots, a symlinked folder) is one model."""
    return str(path.resolve())


def _stem(name: str) -> str:
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    return _SPLIT_SUFFIX.sub("", stem)


def _new_id(parts: Sequence[Path], label: str | None, key: str, taken: set[str]) -> str:
    """The file's name as a slug; on a clash a few hex digits of its path, so it stays the same."""
    base = label or re.sub(r"[^a-z0-9._-]+", "-", _stem(parts[0].name).lower()).strip("-.") or "model"
    digest = hashlib.sha1(key.encode()).hexdigest()
    candidates = [base, *(f"{base}-{digest[:n]}" for n in range(4, 41))]
    return next(c for c in candidates if c not in taken)


@dataclass
class _Registry:
    """What library.json holds."""

    models: dict[str, LibraryModel] = field(default_factory=dict)  # registered, by id
    discovered: dict[str, LibraryModel] = field(default_factory=dict)  # the last scan's finds, by id
    folders: list[str] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)  # _key of removed files a scan must not bring back
    meta: _Meta = field(default_factory=dict)

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
    def from_json(cls, raw: dict[str, Any]) -> _Registry:
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
        # A scan skips registered and hidden files and add() takes a file over from `discovered`,
        # so no file is in both maps.
        return sorted([*self.models.values(), *self.discovered.values()], key=lambda m: m.id.lower())


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


def _find(models: list[LibraryModel], ref: str) -> LibraryModel:
    """Exact id, then a path, then a file name, then an id prefix (case-insensitive)."""
    low = ref.strip().lower()
    target = _key(Path(ref).expanduser()) if low else ""
    tests: list[Callable[[LibraryModel], bool]] = [
        lambda m: m.id == ref,
        lambda m: m.id.lower() == low,
        lambda m: any(_key(p) == target for p in m.paths),
        lambda m: any(p.name.lower() == low for p in m.paths),
        lambda m: m.id.lower().startswith(low),
    ]
    for test in tests if low else []:
        hits = [m for m in models if test(m)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            ids = ", ".join(m.id for m in hits[:8])
            raise ModelNotFoundError(
                f"{ref!r} matches {len(hits)} models in the library.", hint=f"Say which: {ids}."
            )
    close = ", ".join(difflib.get_close_matches(low, [m.id for m in models], n=5, cutoff=0.5))
    hint = f"Did you mean {close}?" if close else "`tailorlm list` shows the ids; or add the file first."
    raise ModelNotFoundError(f"No model {ref!r} in the library.", hint=hint)


def _delete_model_files(parts: Sequence[Path]) -> None:
    """Delete the files; in the HF cache layout also the blob once no snapshot links to it, and
    folders left empty. Nothing outside this repo's folder is looked at."""
    for part in parts:
        snapshots = next(
            (d for d in part.parents if d.name == "snapshots" and d.parent.name.startswith("models--")), None
        )
        blob = part.parent / part.readlink() if part.is_symlink() else None
        part.unlink(missing_ok=True)
        if snapshots is None:
            continue
        in_blobs = blob is not None and blob.parent.resolve() == (snapshots.parent / "blobs").resolve()
        if blob is not None and in_blobs and not any(_key(p) == _key(blob) for p in snapshots.rglob("*")):
            blob.unlink(missing_ok=True)
        folder = part.parent
        while snapshots in folder.parents and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


class Library:
    """The registry file plus discovery. Every call reads the file afresh, so a GUI and a CLI
    holding their own ``Library`` see each other's changes."""

    def __init__(self, registry_path: Path | None = None, *, roots: ScanRoots | None = None) -> None:
        self.registry_path = registry_path or paths.data_dir() / REGISTRY_FILENAME
        self.roots = roots if roots is not None else ScanRoots.default()

    def add(
        self,
        paths: Sequence[Path],
        *,
        origin: str,
        owned: bool,
        repo: str | None = None,
        sha256: str | None = None,
        provenance: dict[str, str] | None = None,
    ) -> LibraryModel:
        """Register files (a download, a conversion, a file the user picked), reading the header
        once; adding the same files again updates their entry and keeps its id."""
        if origin not in ORIGINS:
            raise ValueError(f"unknown origin {origin!r}; one of {ORIGINS}")
        parts = tuple(Path(p).expanduser().absolute() for p in paths)
        missing = [p for p in parts if not p.is_file()]
        if not parts or missing:
            raise ModelNotFoundError(f"No such file: {missing[0] if missing else '(none given)'}.")
        with self._open(write=True) as reg:
            key = _key(parts[0])
            prev = next((m for m in reg.visible() if _key(m.path) == key), None)
            stat_key, size = _stat_key(parts)
            meta = reg.meta.get(stat_key)
            if meta is None or "error" in meta:
                meta = reg.meta[stat_key] = _describe(parts)  # raises the parser's error for a bad file
            if prev is None:
                mid = _new_id(parts, None, key, set(reg.models) | set(reg.discovered))
                prev = LibraryModel(mid, parts, origin, owned, size, added=time.time())
            reg.discovered.pop(prev.id, None)
            model = reg.models[prev.id] = replace(
                prev,
                paths=parts,
                origin=origin,
                owned=owned,
                size_bytes=size,
                repo=repo or prev.repo,
                sha256=sha256 or prev.sha256,
                provenance=dict(prev.provenance if provenance is None else provenance),
                **{**meta, "name": meta["name"] or _stem(parts[0].name)},
            )
            reg.hidden.discard(key)
        return model

    def add_folder(self, folder: Path) -> list[LibraryModel]:
        """Remember a folder of GGUFs (scanned from now on) and return the models found in it."""
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ModelNotFoundError(f"No such folder: {folder}.", hint="Choose a folder of .gguf files.")
        with self._open(write=True) as reg:
            if str(folder) not in reg.folders:
                reg.folders.append(str(folder))
            self._refresh(reg)
            return [m for m in reg.visible() if m.path.is_relative_to(folder)]

    def remove_folder(self, folder: Path) -> None:
        """Stop scanning a folder: its models leave the library, its files stay."""
        name = str(Path(folder).expanduser().resolve())
        with self._open(write=True) as reg:
            if name not in reg.folders:
                raise ModelNotFoundError(f"{name} is not one of the library's folders.")
            reg.folders.remove(name)
            self._refresh(reg)

    def folders(self) -> list[Path]:
        with self._open(write=False) as reg:
            return [Path(f) for f in reg.folders]

    def scan(self) -> list[LibraryModel]:
        """Find models on disk again (new, changed, vanished); only new or changed headers are read."""
        with self._open(write=True) as reg:
            self._refresh(reg)
            return reg.visible()

    def models(self) -> list[LibraryModel]:
        """Registered models and those the last scan found, by id; no disk walk."""
        with self._open(write=False) as reg:
            return reg.visible()

    def find(self, ref: str) -> LibraryModel:
        """By id, path, file name or unique id prefix; ``ModelNotFoundError`` names close ids."""
        return _find(self.models(), ref)

    def remove(self, ref: str, *, delete_files: bool = False) -> LibraryModel:
        """Forget a model (a scan will not bring it back); delete its files only if asked and ours."""
        with self._open(write=True) as reg:
            model = _find(reg.visible(), ref)
            if delete_files and not model.owned:
                raise LibraryError(
                    f"TailorLM did not create {model.id}, so it will not delete it; it is at {model.path}.",
                    hint="Remove it from the library without deleting, or delete the file yourself.",
                )
            try:
                if delete_files:
                    _delete_model_files(model.paths)
            except OSError as exc:
                raise LibraryError(f"Could not delete {exc.filename}: {exc.strerror}.") from None
            reg.models.pop(model.id, None)
            reg.discovered.pop(model.id, None)
            if any(p.exists() for p in model.paths):
                reg.hidden.add(_key(model.path))
        return model

    def _refresh(self, reg: _Registry) -> None:
        """Find every model again; ids and dates of models seen before are kept."""
        cache: _Meta = {}
        for mid, m in list(reg.models.items()):
            if m.present and (facts := _facts(reg.meta, cache, m.paths, None)):
                reg.models[mid] = replace(m, **facts)
        old = {_key(m.path): m for m in reg.discovered.values()}
        seen = {_key(m.path) for m in reg.models.values()} | reg.hidden
        discovered: dict[str, LibraryModel] = {}
        for found in self._discover(reg.folders):
            key = _key(found.paths[0])
            if key in seen or not (facts := _facts(reg.meta, cache, found.paths, found.label)):
                continue
            seen.add(key)
            taken = set(reg.models) | set(discovered)
            prev = old.get(key)
            mid = prev.id if prev and prev.id not in taken else _new_id(found.paths, found.label, key, taken)
            added = prev.added if prev else time.time()
            discovered[mid] = LibraryModel(
                mid, found.paths, found.origin, False, repo=found.repo, added=added, **facts
            )
        reg.discovered, reg.meta = discovered, cache  # the cache keeps only files that still exist
        reg.hidden = {h for h in reg.hidden if Path(h).exists()}  # a deleted file needs no hiding

    def _discover(self, folders: list[str]) -> Iterator[Found]:
        return discover(self.roots, [Path(f) for f in folders])

    @contextlib.contextmanager
    def _open(self, *, write: bool) -> Iterator[_Registry]:
        """Load under the lock and, when the caller raised nothing, save before unlocking."""
        self.registry_path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.registry_path.with_name(self.registry_path.name + ".lock")):
            reg = self._load()
            yield reg
            if write:
                self._save(reg)

    def _load(self) -> _Registry:
        try:
            return _Registry.from_json(json.loads(self.registry_path.read_bytes()))
        except FileNotFoundError:
            return _Registry()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            backup = self.registry_path.with_name(f"{self.registry_path.name}.corrupt-{time.time_ns()}")
            with contextlib.suppress(OSError):
                self.registry_path.replace(backup)  # set aside for the user, not lost
            log.warning(
                "Could not read the model library %s (%s); moved it to %s.", self.registry_path, exc, backup
            )
            return _Registry()

    def _save(self, reg: _Registry) -> None:
        """A temp file beside the registry, renamed over it: a reader sees the old file or the new."""
        tmp = self.registry_path.with_name(f".{self.registry_path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(reg.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.registry_path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise LibraryError(
                f"Could not save the model library to {self.registry_path} ({exc}).",
                hint="Check that the folder is writable and the disk is not full.",
            ) from None


def _facts(meta: _Meta, cache: _Meta, parts: Sequence[Path], label: str | None) -> dict[str, Any] | None:
    """Size and header facts, from ``meta`` while the files are unchanged (kept in ``cache`` for
    the next scan); None, with a warning, for a file that is not a readable GGUF."""
    try:
        key, size = _stat_key(parts)
        facts = meta.get(key)
        if facts is None:
            try:
                facts = _describe(parts)
            except _READ_ERRORS as exc:  # remembered, so a bad file is not parsed at every scan
                facts = {"error": exc.user_message() if isinstance(exc, TailorError) else str(exc)}
        cache[key] = facts
    except OSError as exc:
        facts = {"error": str(exc)}
    if "error" in facts:
        log.warning("Skipping %s: %s", parts[0], facts["error"])
        return None
    return {**facts, "size_bytes": size, "name": facts.get("name") or label or _stem(parts[0].name)}

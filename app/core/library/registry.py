"""The user's models: registered files plus the GGUFs other tools already keep on disk.

Models are referenced where they are — the Hugging Face cache, LM Studio's folders, Ollama's blob
store, folders the user names — and never copied. Where they are found is
:mod:`app.core.library.scan`; their header facts are cached by :mod:`app.core.library.header_facts`;
``library.json`` and its lock are :mod:`app.core.library.registry_file`.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from app.core import paths
from app.core.errors import LibraryError, ModelNotFoundError
from app.core.library.entry import ORIGINS, LibraryModel
from app.core.library.header_facts import Meta, cached_facts, describe, file_stem, stat_key
from app.core.library.registry_file import RegistryData, open_registry
from app.core.library.scan import ScanProblem, ScanRoots, discover

# What callers import from here.
__all__ = ["Library", "LibraryModel", "ScanProblem", "ScanReport", "ScanRoots"]

REGISTRY_FILENAME = "library.json"


@dataclass(frozen=True)
class ScanReport:
    """What a scan found, and each file it skipped with the reason (for the front ends to show)."""

    models: tuple[LibraryModel, ...]
    problems: tuple[ScanProblem, ...]


def _key(path: Path) -> str:
    """One file reached through several links (HF snapshots, a symlinked folder) is one model."""
    return str(path.resolve())


def _new_id(parts: Sequence[Path], label: str | None, key: str, taken: set[str]) -> str:
    """The file's name as a slug; on a clash a few hex digits of its path, so it stays the same."""
    base = label or re.sub(r"[^a-z0-9._-]+", "-", file_stem(parts[0].name).lower()).strip("-.") or "model"
    digest = hashlib.sha1(key.encode()).hexdigest()
    candidates = [base, *(f"{base}-{digest[:n]}" for n in range(4, 41))]
    return next(c for c in candidates if c not in taken)


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
        # Files the latest scan by this object skipped (scan, add_folder, remove_folder), and why.
        self.last_problems: tuple[ScanProblem, ...] = ()

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
            facts_key, size = stat_key(parts)
            meta = reg.meta.get(facts_key)
            if meta is None or "error" in meta:
                meta = reg.meta[facts_key] = describe(parts)  # raises the parser's error for a bad file
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
                **{**meta, "name": meta["name"] or file_stem(parts[0].name)},
            )
            reg.hidden.discard(key)
        return model

    def add_folder(self, folder: Path) -> list[LibraryModel]:
        """Remember a folder of GGUFs (scanned from now on) and return the models found in it;
        files it skipped are in ``last_problems``."""
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ModelNotFoundError(f"No such folder: {folder}.", hint="Choose a folder of .gguf files.")
        with self._open(write=True) as reg:  # saved before the scan, whatever the folder holds
            if str(folder) not in reg.folders:
                reg.folders.append(str(folder))
        with self._open(write=True) as reg:
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
        """Find models on disk again (new, changed, vanished); only new or changed headers are read.
        Files that could not be read are skipped and listed in ``last_problems``."""
        return list(self.scan_report().models)

    def scan_report(self) -> ScanReport:
        """``scan()``, with the files it skipped and why, as one result (for callers that share
        a ``Library`` between threads, where ``last_problems`` may be another call's)."""
        with self._open(write=True) as reg:
            problems = self._refresh(reg)
            return ScanReport(tuple(reg.visible()), problems)

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

    def _refresh(self, reg: RegistryData) -> tuple[ScanProblem, ...]:
        """Find every model again; ids and dates of models seen before are kept. A file that
        cannot be read is skipped and reported, never allowed to hide the others."""
        cache: Meta = {}
        problems: list[ScanProblem] = []
        for mid, m in list(reg.models.items()):
            if not m.present:
                continue
            facts = cached_facts(reg.meta, cache, m.paths, None)
            if isinstance(facts, ScanProblem):
                problems.append(facts)
            else:
                reg.models[mid] = replace(m, **facts)
        old = {_key(m.path): m for m in reg.discovered.values()}
        seen = {_key(m.path) for m in reg.models.values()} | reg.hidden
        discovered: dict[str, LibraryModel] = {}
        for found in discover(self.roots, [Path(f) for f in reg.folders]):
            if isinstance(found, ScanProblem):
                problems.append(found)
                continue
            try:
                key = _key(found.paths[0])
            except (OSError, RuntimeError) as exc:  # replaced by a symlink loop since it was listed
                problems.append(ScanProblem(found.paths[0], f"cannot be read ({exc})"))
                continue
            if key in seen:
                continue
            facts = cached_facts(reg.meta, cache, found.paths, found.label)
            if isinstance(facts, ScanProblem):
                problems.append(facts)
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
        self.last_problems = tuple(problems)
        return self.last_problems

    def _open(self, *, write: bool) -> AbstractContextManager[RegistryData]:
        """The registry, loaded under its lock (and saved on leaving when ``write``)."""
        return open_registry(self.registry_path, write=write)

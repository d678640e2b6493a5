"""Where other tools keep GGUF models on disk, and how to find them there without reading them:
the Hugging Face cache, LM Studio's folders, Ollama's blob store, and folders the user names.

A scan yields ``Found`` (paths, origin, repo); the library reads headers and keeps the registry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.core import paths
from app.core.hub.files import group_gguf_files
from app.core.model.gguf_header import GGUF_MAGIC

log = logging.getLogger(__name__)

MAX_FOLDER_DEPTH = 6  # enough for <publisher>/<repo>/<quant>/ trees; bounds a scan of a home folder
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"  # ollama types/model/manifest.go
_OLLAMA_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # anything else could point outside blobs/


@dataclass(frozen=True)
class ScanRoots:
    """Where other tools keep models. Tests pass their own so no real folder is ever scanned."""

    hf_cache: Path | None
    lmstudio: tuple[Path, ...] = ()
    ollama: tuple[Path, ...] = ()

    @classmethod
    def default(cls) -> ScanRoots:
        home = Path.home()
        lmstudio = [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
        with contextlib.suppress(OSError, ValueError, AttributeError):
            # LM Studio's "Models Directory" setting, which moves its models anywhere.
            folder = json.loads((home / ".lmstudio" / "settings.json").read_text("utf-8")).get(
                "downloadsFolder"
            )
            if isinstance(folder, str) and folder:
                lmstudio.append(Path(folder).expanduser())
        ollama = [Path(os.environ["OLLAMA_MODELS"]).expanduser()] if os.environ.get("OLLAMA_MODELS") else []
        # A user install, then the Linux service, which runs as user `ollama` (ollama's install.sh).
        ollama += [home / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")]
        return cls(paths.hf_cache_dir(), _existing(lmstudio), _existing(ollama))


def _existing(dirs: list[Path]) -> tuple[Path, ...]:
    found: dict[Path, Path] = {}
    for d in dirs:
        with contextlib.suppress(OSError):
            if d.is_dir():
                found.setdefault(d.resolve(), d)
    return tuple(found.values())


@dataclass(frozen=True)
class Found:
    """A model a scan found, before its header is read."""

    paths: tuple[Path, ...]
    origin: str
    repo: str | None = None
    label: str | None = None  # id and name where the file name says nothing (Ollama blobs)


def _grouped(files: list[Path], base: Path) -> list[tuple[Path, ...]]:
    """Split parts become one model and projectors (mmproj) are dropped, as for Hub repos."""
    by_rel = {f.relative_to(base).as_posix(): f for f in files}
    return [tuple(by_rel[p] for p in g.paths) for g in group_gguf_files((p, None) for p in sorted(by_rel))]


def _scan_hf_cache(root: Path) -> Iterator[Found]:
    """``models--org--name/snapshots/<commit>/**.gguf``; the snapshot that ``refs/main`` names comes
    first, so a blob several snapshots share is listed under it. Partial downloads live in blobs/ as
    ``*.incomplete`` with no snapshot link yet; a link whose blob is gone fails ``is_file``."""
    for repo_dir in sorted(root.glob("models--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")  # the Hub forbids "--" in names
        ref = None
        with contextlib.suppress(OSError):
            ref = (repo_dir / "refs" / "main").read_text("utf-8").strip()
        for snap in sorted((repo_dir / "snapshots").glob("*"), key=lambda d: (d.name != ref, d.name)):
            for parts in _grouped([f for f in snap.rglob("*.gguf") if f.is_file()], snap):
                yield Found(parts, "hf_cache", repo)


def _scan_lmstudio(root: Path) -> Iterator[Found]:
    """``<root>/<publisher>/<repo>/*.gguf``, the layout LM Studio downloads into."""
    for repo_dir in sorted(d for d in root.glob("*/*") if d.is_dir()):
        for parts in _grouped([f for f in repo_dir.glob("*.gguf") if f.is_file()], repo_dir):
            yield Found(parts, "lmstudio", f"{repo_dir.parent.name}/{repo_dir.name}")


def _scan_ollama(root: Path) -> Iterator[Found]:
    """``manifests/<registry>/<namespace>/<model>/<tag>`` name a model layer, a GGUF kept as
    ``blobs/sha256-<hex>`` without a suffix."""
    for manifest in sorted(m for m in root.glob("manifests/*/*/*/*") if m.is_file()):
        registry, namespace, model, tag = manifest.relative_to(root / "manifests").parts
        try:
            layers = json.loads(manifest.read_text("utf-8"))["layers"]
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
            log.warning("Skipping Ollama manifest %s: it names no model layer.", manifest)
            continue
        if not _OLLAMA_DIGEST.fullmatch(str(digest)):
            continue
        blob = root / "blobs" / str(digest).replace(":", "-")
        if not _is_gguf(blob):  # a model layer is always GGUF today; anything else is not ours to read
            continue
        who = model if namespace == "library" else f"{namespace}/{model}"
        who = who if registry == "registry.ollama.ai" else f"{registry}/{who}"
        repo = f"{namespace}/{model}" if registry == "hf.co" else None  # `ollama pull hf.co/org/repo`
        yield Found((blob,), "ollama", repo, f"ollama:{who}:{tag}")


def _scan_folder(folder: Path) -> Iterator[Found]:
    """Recursive and bounded; each real folder is walked once, so symlink loops end."""
    seen: set[Path] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        here = Path(top)
        real = here.resolve()
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        deep = len(here.relative_to(folder).parts) >= MAX_FOLDER_DEPTH
        dirs[:] = [] if deep else sorted(d for d in dirs if not d.startswith("."))
        ggufs = [here / f for f in files if f.lower().endswith(".gguf")]  # not .gguf.part downloads
        for parts in _grouped(ggufs, here):
            yield Found(parts, "folder")


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def discover(roots: ScanRoots, folders: list[Path]) -> Iterator[Found]:
    """Every model in ``roots`` and ``folders``, HF cache first (its repo ids are the best names)."""
    if roots.hf_cache is not None and roots.hf_cache.is_dir():
        yield from _scan_hf_cache(roots.hf_cache)
    for root in roots.lmstudio:
        yield from _scan_lmstudio(root)
    for root in roots.ollama:
        yield from _scan_ollama(root)
    for folder in folders:
        yield from _scan_folder(folder)

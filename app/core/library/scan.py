"""Where other tools keep GGUF models on disk, and how to find them there without reading them:
the Hugging Face cache, LM Studio's folders, Ollama's blob store, and folders the user names.

A scan yields ``Found`` (paths, origin, repo) and a ``ScanProblem`` for each file it had to skip;
the library reads headers and keeps the registry. Every folder here may hold anything: only regular
files are opened (opening a pipe waits for a writer), and each real folder is walked once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.core import paths
from app.core.files import not_a_regular_file
from app.core.hub.files import group_gguf_files
from app.core.model.gguf_header import GGUF_MAGIC

EMPTY = "is empty"  # a 0-byte file, the reason a scan gives for it
# An error's sentence about "the file" whose subject the file's name replaces in a summary.
_SUBJECT = re.compile(r"^(?:This|The file|It)\s+(?=(?:is|was|has|does|cannot)\b)")
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s")
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
        with contextlib.suppress(OSError, ValueError, AttributeError, RecursionError):
            # LM Studio's "Models Directory" setting, which moves its models anywhere.
            folder = json.loads(_read_small(home / ".lmstudio" / "settings.json")).get("downloadsFolder")
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


@dataclass(frozen=True)
class ScanProblem:
    """A file a scan skipped, and why in a sentence, for the front ends to show."""

    path: Path
    reason: str


def skipped_summary(problems: Sequence[ScanProblem], *, names: int = 3) -> str:
    """ "Skipped 2 files: empty.gguf is empty; notes.gguf is not a GGUF file (…)." — the first
    ``names`` files by name with why, then how many more; "" when nothing was skipped."""
    if not problems:
        return ""
    n = len(problems)
    shown = "; ".join(_clause(p) for p in problems[:names])
    more = f"; and {n - names} more" if n > names else ""
    return f"Skipped {n} file{'s' if n != 1 else ''}: {shown}{more}."


def _clause(problem: ScanProblem) -> str:
    """ "notes.gguf is not a GGUF file (…)": the reason's first sentence, with the file's name as
    its subject. Reasons are either predicates ("is not a regular file …", from this module) or an
    error's sentences ("This is not a GGUF file …. Choose …", "/path/x.gguf cannot be read …")."""
    name, reason = problem.path.name, problem.reason.strip()
    if reason.startswith(str(problem.path)):
        reason = reason[len(str(problem.path)) :].lstrip()
    reason = _SUBJECT.sub("", reason, count=1)
    reason = _FIRST_SENTENCE.split(reason, maxsplit=1)[0].rstrip(".")
    if reason[:1].islower():
        return f"{name} {reason}"
    return f"{name}: {reason}"


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a file the scan may open, or None (see :mod:`app.core.files`)."""
    return not_a_regular_file(path)


def _read_small(path: Path, limit_bytes: int = 1 << 20) -> bytes:
    """A small file another tool wrote (a setting, a ref, a manifest): regular files only, bounded."""
    reason = file_problem(path)
    if reason is not None:
        raise OSError(f"{path} {reason}")
    with path.open("rb") as f:
        raw = f.read(limit_bytes + 1)
    if len(raw) > limit_bytes:
        raise ValueError(f"{path} is larger than {limit_bytes:,} bytes")
    return raw


def _sorted_out(candidates: list[Path]) -> tuple[list[Path], list[ScanProblem]]:
    """Regular files, and a problem for each other candidate; a dangling link (its blob deleted,
    or a file gone since the folder was listed) is no model and no problem either."""
    files: list[Path] = []
    problems: list[ScanProblem] = []
    for path in candidates:
        size = None
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        except OSError:
            pass  # file_problem says why
        reason = file_problem(path)
        if reason is None and size == 0:  # no header to read: say so plainly, before any parser does
            reason = EMPTY
        if reason is None:
            files.append(path)
        else:
            problems.append(ScanProblem(path, reason))
    return files, problems


def _walk(top: Path, *, skip_hidden: bool) -> Iterator[tuple[Path, list[str]]]:
    """(folder, its file names) under ``top``, bounded in depth; each real folder is walked once,
    so symlink loops end, and a folder that cannot be listed is skipped."""
    seen: set[Path] = set()
    for here_s, dirs, files in os.walk(top, followlinks=True):
        here = Path(here_s)
        try:
            real = here.resolve(strict=True)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            dirs.clear()
            continue
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        deep = len(here.relative_to(top).parts) >= MAX_FOLDER_DEPTH
        dirs[:] = [] if deep else sorted(d for d in dirs if not (skip_hidden and d.startswith(".")))
        yield here, files


def _ggufs_under(top: Path, *, skip_hidden: bool) -> Iterator[tuple[Path, list[Path]] | ScanProblem]:
    """Each folder's regular ``.gguf`` files (not ``.gguf.part`` downloads), and the problems."""
    for here, names in _walk(top, skip_hidden=skip_hidden):
        files, problems = _sorted_out(sorted(here / f for f in names if f.lower().endswith(".gguf")))
        yield from problems
        yield here, files


def _grouped(files: list[Path], base: Path) -> list[tuple[Path, ...]]:
    """Split parts become one model and projectors (mmproj) are dropped, as for Hub repos."""
    by_rel = {f.relative_to(base).as_posix(): f for f in files}
    return [tuple(by_rel[p] for p in g.paths) for g in group_gguf_files((p, None) for p in sorted(by_rel))]


def _scan_hf_cache(root: Path) -> Iterator[Found | ScanProblem]:
    """``models--org--name/snapshots/<commit>/**.gguf``; the snapshot that ``refs/main`` names comes
    first, so a blob several snapshots share is listed under it. Partial downloads live in blobs/ as
    ``*.incomplete`` with no snapshot link yet; a link whose blob is gone fails ``is_file``."""
    for repo_dir in sorted(root.glob("models--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/")  # the Hub forbids "--" in names
        ref = None
        with contextlib.suppress(OSError, ValueError):
            ref = _read_small(repo_dir / "refs" / "main").decode("utf-8").strip()
        for snap in sorted((repo_dir / "snapshots").glob("*"), key=lambda d: (d.name != ref, d.name)):
            files: list[Path] = []
            for item in _ggufs_under(snap, skip_hidden=False):
                if isinstance(item, ScanProblem):
                    yield item
                else:
                    files += item[1]
            for parts in _grouped(files, snap):
                yield Found(parts, "hf_cache", repo)


def _scan_lmstudio(root: Path) -> Iterator[Found | ScanProblem]:
    """``<root>/<publisher>/<repo>/*.gguf``, the layout LM Studio downloads into."""
    for repo_dir in sorted(d for d in root.glob("*/*") if d.is_dir()):
        files, problems = _sorted_out(sorted(repo_dir.glob("*.gguf")))
        yield from problems
        for parts in _grouped(files, repo_dir):
            yield Found(parts, "lmstudio", f"{repo_dir.parent.name}/{repo_dir.name}")


def _scan_ollama(root: Path) -> Iterator[Found | ScanProblem]:
    """``manifests/<registry>/<namespace>/<model>/<tag>`` name a model layer, a GGUF kept as
    ``blobs/sha256-<hex>`` without a suffix."""
    for manifest in sorted(m for m in root.glob("manifests/*/*/*/*") if m.is_file()):
        registry, namespace, model, tag = manifest.relative_to(root / "manifests").parts
        try:
            layers = json.loads(_read_small(manifest))["layers"]
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration, RecursionError):
            yield ScanProblem(manifest, "is an Ollama manifest that names no model layer")
            continue
        if not _OLLAMA_DIGEST.fullmatch(str(digest)):
            yield ScanProblem(manifest, "is an Ollama manifest with an invalid digest")
            continue
        blob = root / "blobs" / str(digest).replace(":", "-")
        reason = file_problem(blob) or (None if _is_gguf(blob) else "is not a GGUF file")
        if reason is not None:  # a model layer is always GGUF today; anything else is not ours to read
            yield ScanProblem(blob, reason)
            continue
        who = model if namespace == "library" else f"{namespace}/{model}"
        who = who if registry == "registry.ollama.ai" else f"{registry}/{who}"
        repo = f"{namespace}/{model}" if registry == "hf.co" else None  # `ollama pull hf.co/org/repo`
        yield Found((blob,), "ollama", repo, f"ollama:{who}:{tag}")


def _scan_folder(folder: Path) -> Iterator[Found | ScanProblem]:
    """Recursive and bounded; hidden folders are skipped."""
    for item in _ggufs_under(folder, skip_hidden=True):
        if isinstance(item, ScanProblem):
            yield item
            continue
        here, files = item
        for parts in _grouped(files, here):
            yield Found(parts, "folder")


def _is_gguf(path: Path) -> bool:
    """The magic of a file ``file_problem`` passed (never a pipe: opening one blocks)."""
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def discover(roots: ScanRoots, folders: list[Path]) -> Iterator[Found | ScanProblem]:
    """Every model in ``roots`` and ``folders``, HF cache first (its repo ids are the best names),
    and a ``ScanProblem`` for each file skipped on the way."""
    if roots.hf_cache is not None and roots.hf_cache.is_dir():
        yield from _scan_hf_cache(roots.hf_cache)
    for root in roots.lmstudio:
        yield from _scan_lmstudio(root)
    for root in roots.ollama:
        yield from _scan_ollama(root)
    for folder in folders:
        yield from _scan_folder(folder)

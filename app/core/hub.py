"""The Hugging Face Hub: search GGUF repos, list a repo's GGUF models with sizes and SHA-256s,
size each one up from its remote header, and pull one into the shared Hugging Face cache.

A pull writes the cache layout other tools read (``models--org--name/blobs/<sha256>``,
``snapshots/<commit>/<file>`` → the blob, ``refs/main``), but the bytes come through our own
resumable downloader: huggingface_hub deletes its partial file on failure. Each part is verified
against the SHA-256 from the LFS pointer before the snapshot link exists, and the model is
registered in the library only when every part is in place.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from app.core.download import Progress, check_disk_space, download
from app.core.errors import HubError, ModelNotFoundError, TailorError
from app.core.gguf_header import join_split_parts
from app.core.hub_files import GGUFFile, group_gguf_files
from app.core.hub_http import auth_headers, hub_endpoint, resolve_url
from app.core.model_info import ModelInfo, model_info_from_header
from app.core.paths import hf_cache_dir
from app.core.quality import quality_of
from app.core.recommend import Budget, Plan, best_plan, pick_plan
from app.core.remote_source import read_remote_gguf_header

if TYPE_CHECKING:
    from app.core.library import Library, LibraryModel


@dataclass(frozen=True)
class RepoGGUF:
    file: GGUFFile
    sha256: tuple[str | None, ...]  # per part, from the LFS pointer
    sizes: tuple[int | None, ...] = ()  # per part

    def part_sizes(self) -> list[int | None]:
        if self.sizes:
            return list(self.sizes)
        return [self.file.size_bytes] if len(self.file.paths) == 1 else [None] * len(self.file.paths)


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    downloads: int
    likes: int
    gated: bool
    last_modified: str | None


@dataclass(frozen=True)
class FilePlan:
    """One GGUF model of a repo, sized up for this machine from its remote header."""

    repo_file: RepoGGUF
    model: ModelInfo
    plan: Plan


def _hub_errors(repo_id: str, exc: Exception) -> TailorError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    if isinstance(exc, GatedRepoError):
        return HubError(f"{repo_id} is gated.", hint="Accept its license on the Hub and set HF_TOKEN.")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFoundError(f"The Hub has no repo {repo_id!r} (or it is private).",
                                  hint="Check the name; for a private repo set HF_TOKEN.")  # fmt: skip
    return HubError(f"Could not reach the Hub for {repo_id} ({exc.__class__.__name__}).",
                    hint="Check the connection and try again.")  # fmt: skip


def search_models(query: str, *, limit: int = 20) -> list[HubModel]:
    """GGUF repos matching ``query``, most downloaded first."""
    from huggingface_hub import HfApi

    try:
        found = HfApi(endpoint=hub_endpoint()).list_models(
            search=query or None, filter="gguf", sort="downloads", limit=limit
        )
        return [HubModel(m.id, int(m.downloads or 0), int(m.likes or 0), bool(m.gated),
                         m.last_modified.isoformat() if m.last_modified else None) for m in found]  # fmt: skip
    except OSError as exc:
        raise _hub_errors(query, exc) from None


def list_gguf_files(repo_id: str, *, revision: str = "main") -> list[RepoGGUF]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = HfApi(endpoint=hub_endpoint()).list_repo_tree(repo_id, recursive=True, revision=revision)
        entries = [e for e in tree if isinstance(e, RepoFile)]
    except OSError as exc:  # huggingface_hub's HTTP errors derive from OSError
        raise _hub_errors(repo_id, exc) from None
    sha = {e.path: (e.lfs.sha256 if e.lfs is not None else None) for e in entries}
    size = {e.path: int(e.size) for e in entries}
    files = group_gguf_files(size.items())
    return [RepoGGUF(f, tuple(sha[p] for p in f.paths), tuple(size[p] for p in f.paths)) for f in files]


def remote_model(repo_id: str, f: GGUFFile, *, revision: str = "main") -> ModelInfo:
    """ModelInfo of a (possibly split) GGUF on the Hub from its headers alone."""
    headers = [read_remote_gguf_header(repo_id, p, revision=revision)[0] for p in f.paths]
    return model_info_from_header(
        join_split_parts(headers, f.size_bytes), source=f"{repo_id}/{f.first}", source_kind="hf_gguf"
    )


def plan_files(repo_id: str, files: list[RepoGGUF], budget: Budget, n_ctx: int) -> list[FilePlan]:
    """Every GGUF model in the repo with the advisor's best plan for it on ``budget``."""
    out = []
    for rf in files:
        model = remote_model(repo_id, rf.file)
        quant = model.file_type or rf.file.quant or "?"
        out.append(FilePlan(rf, model, best_plan(model, quant, n_ctx, budget)))
    return out


def recommended_file(planned: list[FilePlan]) -> FilePlan | None:
    """The file the advisor would pick: best quality that fits, smaller among near-equals."""
    plans = [fp.plan for fp in planned]
    with_dom = []
    for fp in planned:
        worse = any(o.plan.file_bytes <= fp.plan.file_bytes
                    and quality_of(o.plan.quant).kld < quality_of(fp.plan.quant).kld for o in planned)  # fmt: skip
        with_dom.append((fp, worse))
    candidates = [fp.plan for fp, dominated in with_dom if not dominated] or plans
    best = pick_plan(candidates)
    return next((fp for fp in planned if fp.plan is best), None)


def select_file(files: list[RepoGGUF], *, quant: str | None = None, filename: str | None = None) -> RepoGGUF:
    """The model a user named by ``--file`` (any part's path or base name) or ``--quant``."""
    if filename:
        for rf in files:
            if filename in rf.file.paths or filename in (PurePosixPath(p).name for p in rf.file.paths):
                return rf
        raise ModelNotFoundError(f"No GGUF file {filename!r} in this repo.",
                                 hint="Files: " + ", ".join(rf.file.first for rf in files))  # fmt: skip
    if quant:
        hits = [rf for rf in files if (rf.file.quant or "").upper() == quant.upper()]
        if not hits:
            have = sorted({rf.file.quant or "?" for rf in files})
            raise ModelNotFoundError(
                f"No {quant.upper()} file in this repo.", hint="It has: " + ", ".join(have)
            )
        return min(hits, key=lambda rf: rf.file.size_bytes or 0)  # e.g. a plain and an "imatrix" copy
    raise ValueError("select_file needs quant or filename")


# --- the shared Hugging Face cache ---------------------------------------------------------


def repo_cache_dir(repo_id: str, cache: Path | None = None) -> Path:
    return (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))


def safe_relpath(path: str) -> PurePosixPath:
    """A repo file path that stays inside the snapshot folder; refuses ``..`` and absolute paths."""
    p = PurePosixPath(path)
    if (
        not path
        or p.is_absolute()
        or ".." in p.parts
        or "\\" in path
        or path.startswith("~")
        or ":" in p.parts[0]
    ):
        raise HubError(f"Refusing the file name {path!r}: it would land outside the model folder.",
                       hint="The repo is malformed or hostile; nothing was written.")  # fmt: skip
    return p


def _link(snapshot_file: Path, blob: Path) -> None:
    """``snapshot_file`` → ``blob`` as a relative symlink (copy where symlinks are not allowed)."""
    snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = snapshot_file.with_name(snapshot_file.name + ".link-tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(os.path.relpath(blob, snapshot_file.parent))
    except OSError:  # Windows without developer mode: huggingface_hub copies too
        shutil.copyfile(blob, tmp)
    tmp.replace(snapshot_file)


@dataclass(frozen=True)
class PullProgress:
    done_bytes: int
    total_bytes: int
    speed_bytes_s: float
    eta_s: float | None
    part: int  # 1-based
    n_parts: int
    file: str


def pull(
    repo_id: str,
    rf: RepoGGUF,
    *,
    library: Library | None = None,
    revision: str = "main",
    on_progress: Callable[[PullProgress], None] | None = None,
    cancel: threading.Event | None = None,
    cache: Path | None = None,
) -> tuple[list[Path], LibraryModel | None]:
    """Download every part of ``rf`` into the HF cache, verified; register it in ``library``.

    Returns the snapshot paths (part order) and the library entry. A cancel or a failure leaves
    the partial blob to resume from and registers nothing.
    """
    from huggingface_hub import HfApi

    rels = [safe_relpath(p) for p in rf.file.paths]
    try:
        commit = HfApi(endpoint=hub_endpoint()).model_info(repo_id, revision=revision).sha or revision
    except OSError as exc:
        raise _hub_errors(repo_id, exc) from None
    root = repo_cache_dir(repo_id, cache)
    blobs = root / "blobs"
    snapshot = root / "snapshots" / commit
    # Sizes per part from the listing; a part already in the cache costs nothing.
    sizes = rf.part_sizes()
    targets = [
        blobs / sha if sha else blobs / f"{commit}-{rel.name}"
        for sha, rel in zip(rf.sha256, rels, strict=True)
    ]
    todo = [
        i
        for i, t in enumerate(targets)
        if not (t.exists() and (sizes[i] is None or t.stat().st_size == sizes[i]))
    ]
    partial = {i: (targets[i].with_name(targets[i].name + ".part")) for i in todo}
    need = sum((sizes[i] or 0) - (partial[i].stat().st_size if partial[i].exists() else 0) for i in todo)
    check_disk_space(blobs, max(0, need))
    total = sum(s or 0 for s in sizes)
    done_before = sum(sizes[i] or 0 for i in range(len(targets)) if i not in todo)
    t0, base = time.monotonic(), done_before
    headers = auth_headers()
    for i in todo:
        url = resolve_url(repo_id, rf.file.paths[i], commit)

        def relay(p: Progress, i: int = i, before: int = done_before) -> None:
            if on_progress is None:
                return
            done = before + p.done_bytes
            speed = p.speed_bytes_s if p.speed_bytes_s else (done - base) / max(time.monotonic() - t0, 1e-6)
            eta = (total - done) / speed if speed > 0 and total else None
            on_progress(PullProgress(done, total, speed, eta, i + 1, len(targets), rf.file.paths[i]))

        download(url, targets[i], expected_sha256=rf.sha256[i], expected_size=sizes[i], headers=headers,
                 on_progress=relay, cancel=cancel)  # fmt: skip
        done_before += sizes[i] or targets[i].stat().st_size
    paths = []
    for rel, blob in zip(rels, targets, strict=True):
        dest = snapshot.joinpath(*rel.parts)
        _link(dest, blob)
        paths.append(dest)
    refs = root / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    if revision != commit:
        (refs / revision).write_text(commit)
    entry = None
    if library is not None:
        entry = library.add(paths, origin="tailorlm", owned=True, repo=repo_id,
                            sha256=rf.sha256[0], provenance={"source": repo_id, "revision": commit})  # fmt: skip
    return paths, entry

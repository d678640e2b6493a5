"""Hugging Face Hub repos: search GGUF repos, and list a repo's GGUF models with their sizes and
the SHA-256 of every part (from the LFS pointers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from app.core.errors import HubError, ModelNotFoundError, TailorError
from app.core.hub.files import GGUFFile, group_gguf_files
from app.core.hub.http import hub_endpoint


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


def hub_errors(repo_id: str, exc: Exception) -> TailorError:
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
        raise hub_errors(query, exc) from None


def list_gguf_files(repo_id: str, *, revision: str = "main") -> list[RepoGGUF]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = HfApi(endpoint=hub_endpoint()).list_repo_tree(repo_id, recursive=True, revision=revision)
        entries = [e for e in tree if isinstance(e, RepoFile)]
    except OSError as exc:  # huggingface_hub's HTTP errors derive from OSError
        raise hub_errors(repo_id, exc) from None
    sha = {e.path: (e.lfs.sha256 if e.lfs is not None else None) for e in entries}
    size = {e.path: int(e.size) for e in entries}
    files = group_gguf_files(size.items())
    return [RepoGGUF(f, tuple(sha[p] for p in f.paths), tuple(size[p] for p in f.paths)) for f in files]


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

"""Hugging Face Hub repos: search GGUF repos, and list a repo's GGUF models with their sizes and
the SHA-256 of every part (from the LFS pointers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from app.core.errors import ModelNotFoundError
from app.core.hub.api import list_tree, search
from app.core.hub.files import GGUFFile, group_gguf_files
from app.core.hub.names import check_repo_id, check_revision, hostile, is_repo_id


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


def search_models(query: str, *, limit: int = 20) -> list[HubModel]:
    """GGUF repos matching ``query``, most downloaded first; hits with an invalid repo id are left out."""
    found = []
    for m in search(query, limit=limit):
        if is_repo_id(m["id"]):
            modified = m.get("lastModified")
            found.append(HubModel(m["id"], _count(m.get("downloads")), _count(m.get("likes")), bool(m.get("gated")),
                                  modified[:40] if isinstance(modified, str) else None))  # fmt: skip
    return found


def _count(value: object) -> int:
    if value is None:
        return 0  # the Hub leaves counts out of a brand-new repo
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise hostile(f"a download or like count is {str(value)[:40]!r}")
    return value


def list_gguf_files(repo_id: str, *, revision: str = "main") -> list[RepoGGUF]:
    """The repo's GGUF models (split parts joined) with sizes and LFS SHA-256s, all checked."""
    entries = list_tree(check_repo_id(repo_id), check_revision(revision))
    sha = {e.path: e.sha256 for e in entries}
    size = {e.path: e.size_bytes for e in entries}
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

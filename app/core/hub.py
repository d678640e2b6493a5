"""A Hub repo's GGUF models: list them with sizes and SHA-256s, and read each one's header
remotely so the advisor can plan every quant file before a byte of weights is downloaded."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import HubError, ModelNotFoundError
from app.core.gguf_header import join_split_parts
from app.core.hub_files import GGUFFile, group_gguf_files
from app.core.model_info import ModelInfo, model_info_from_header
from app.core.remote_source import read_remote_gguf_header


@dataclass(frozen=True)
class RepoGGUF:
    file: GGUFFile
    sha256: tuple[str | None, ...]  # per part, from the LFS pointer


def list_gguf_files(repo_id: str, *, revision: str = "main") -> list[RepoGGUF]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    try:
        tree = HfApi().list_repo_tree(repo_id, recursive=True, revision=revision)
        entries = [e for e in tree if isinstance(e, RepoFile)]
    except GatedRepoError:
        raise HubError(f"{repo_id} is gated.", hint="Accept its license on the Hub and set HF_TOKEN.") from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"The Hub has no repo {repo_id!r} (or it is private).") from None
    except OSError as exc:
        raise HubError(f"Could not list {repo_id} ({exc.__class__.__name__}).") from None
    sha = {e.path: (e.lfs.sha256 if e.lfs is not None else None) for e in entries}
    files = group_gguf_files((e.path, int(e.size)) for e in entries)
    return [RepoGGUF(f, tuple(sha[p] for p in f.paths)) for f in files]


def remote_model(repo_id: str, f: GGUFFile, *, revision: str = "main") -> ModelInfo:
    """ModelInfo of a (possibly split) GGUF on the Hub from its headers alone."""
    headers = [read_remote_gguf_header(repo_id, p, revision=revision)[0] for p in f.paths]
    return model_info_from_header(join_split_parts(headers, f.size_bytes), source=f"{repo_id}/{f.first}", source_kind="hf_gguf")

"""Pull a Hub model into the shared Hugging Face cache and register it in the library."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from app.core.hub.cache import PullProgress, pull
from app.core.hub.repo import RepoGGUF
from app.core.library.registry import Library, LibraryModel


def pull_model(
    repo_id: str,
    rf: RepoGGUF,
    *,
    library: Library,
    revision: str = "main",
    on_progress: Callable[[PullProgress], None] | None = None,
    cancel: threading.Event | None = None,
    cache: Path | None = None,
) -> tuple[list[Path], LibraryModel]:
    """Download every part of ``rf`` (verified) and register the model; a failure registers nothing."""
    paths, commit = pull(repo_id, rf, revision=revision, on_progress=on_progress, cancel=cancel, cache=cache)
    entry = library.add(paths, origin="tailorlm", owned=True, repo=repo_id,
                        sha256=rf.sha256[0], provenance={"source": repo_id, "revision": commit})  # fmt: skip
    return paths, entry

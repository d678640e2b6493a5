"""Pull a Hub model into the shared Hugging Face cache.

A pull writes the cache layout other tools read (``models--org--name/blobs/<sha256>``,
``snapshots/<commit>/<file>`` → the blob, ``refs/main``), but the bytes come through our own
resumable downloader: huggingface_hub deletes its partial file on failure. Each part is verified
against the SHA-256 from the LFS pointer before the snapshot link exists.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from app.core.errors import HubError
from app.core.hub.download import Progress, check_disk_space, download
from app.core.hub.http import auth_headers, hub_endpoint, resolve_url
from app.core.hub.repo import RepoGGUF, hub_errors
from app.core.paths import hf_cache_dir


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
    revision: str = "main",
    on_progress: Callable[[PullProgress], None] | None = None,
    cancel: threading.Event | None = None,
    cache: Path | None = None,
) -> tuple[list[Path], str]:
    """Download every part of ``rf`` into the HF cache, verified.

    Returns the snapshot paths (part order) and the commit. A cancel or a failure leaves the
    partial blob to resume from and links nothing.
    """
    from huggingface_hub import HfApi

    rels = [safe_relpath(p) for p in rf.file.paths]
    try:
        commit = HfApi(endpoint=hub_endpoint()).model_info(repo_id, revision=revision).sha or revision
    except OSError as exc:
        raise hub_errors(repo_id, exc) from None
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
    return paths, commit

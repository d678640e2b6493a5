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
from pathlib import Path

from app.core.hub.api import repo_commit
from app.core.hub.download import Progress, check_disk_space, download
from app.core.hub.http import auth_headers, resolve_url
from app.core.hub.names import check_repo_id, check_revision, check_sha256, inside, safe_relpath
from app.core.hub.repo import RepoGGUF
from app.core.paths import hf_cache_dir


def repo_cache_dir(repo_id: str, cache: Path | None = None) -> Path:
    """``models--org--name`` in the cache; the repo id is checked first (``--`` and ``..`` refused)."""
    root = cache or hf_cache_dir()
    return inside(root, root / ("models--" + check_repo_id(repo_id).replace("/", "--")))


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
    root = repo_cache_dir(repo_id, cache)
    check_revision(revision)
    rels = [safe_relpath(p) for p in rf.file.paths]
    shas = [check_sha256(sha) if sha is not None else None for sha in rf.sha256]
    commit = repo_commit(repo_id, revision)
    blobs = root / "blobs"
    snapshot = root / "snapshots" / commit
    # Sizes per part from the listing; a part already in the cache costs nothing.
    sizes = rf.part_sizes()
    targets = [
        blobs / sha if sha else blobs / f"{commit}-{rel.name}" for sha, rel in zip(shas, rels, strict=True)
    ]
    links = [snapshot.joinpath(*rel.parts) for rel in rels]
    # Every name was checked against its format; the final paths are checked too, before a byte.
    for path in targets:
        inside(blobs, path)
    for path in links:
        inside(snapshot, path)
    ref = inside(root / "refs", root / "refs" / revision) if revision != commit else None
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

        download(url, targets[i], expected_sha256=shas[i], expected_size=sizes[i], headers=headers,
                 on_progress=relay, cancel=cancel)  # fmt: skip
        done_before += sizes[i] or targets[i].stat().st_size
    for dest, blob in zip(links, targets, strict=True):
        _link(dest, blob)
    if ref is not None:
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return links, commit

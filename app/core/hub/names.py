"""Names from the Hub that become paths: each checked against its exact format, and every final
path checked to stay inside its root, before anything touches the disk.

A commit id, an LFS SHA-256, a repo id, a file path and a revision all end up as folder or file
names in the shared cache (``models--org--name/snapshots/<commit>/<file>``,
``blobs/<sha256>``, ``refs/<revision>``); any of them that is a path would write elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from app.core.errors import HubError

HOSTILE_HINT = "Nothing was written. If it persists, HF_ENDPOINT does not point at the Hugging Face Hub."
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")  # git SHA-1, as the Hub's "sha" and X-Repo-Commit carry it
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")  # the LFS pointer's oid
# huggingface_hub.utils.validate_repo_id (REPO_ID_REGEX + its "--", "..", ".git" rules), ASCII only
_REPO_PART_RE = re.compile(r"(?!-|\.)[A-Za-z0-9_.\-]{1,96}(?<!-|\.)")
# A git ref name (git check-ref-format, simplified to the characters the Hub's branches, tags and
# ``refs/pr/N`` use); 255 is the usual file-name limit since it becomes a file under refs/.
_REVISION_RE = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*")
_REVISION_MAX = 255


def hostile(what: str) -> HubError:
    """The one error for a Hub answer that does not have the shape it must have."""
    return HubError(f"The Hub's answer is malformed or hostile ({what}).", hint=HOSTILE_HINT)


def check_commit(commit: object) -> str:
    if not isinstance(commit, str) or not _COMMIT_RE.fullmatch(commit):
        raise hostile(f"commit id {str(commit)[:80]!r} is not 40 hex digits")
    return commit


def check_sha256(sha: object) -> str:
    if not isinstance(sha, str) or not _SHA256_RE.fullmatch(sha):
        raise hostile(f"SHA-256 {str(sha)[:80]!r} is not 64 hex digits")
    return sha.lower()


def is_repo_id(repo_id: object) -> bool:
    """``name`` or ``namespace/name`` as huggingface_hub's ``validate_repo_id`` accepts them."""
    if not isinstance(repo_id, str) or repo_id.count("/") > 1:
        return False
    if "--" in repo_id or ".." in repo_id or repo_id.endswith(".git"):
        return False
    return all(_REPO_PART_RE.fullmatch(part) for part in repo_id.split("/"))


def check_repo_id(repo_id: str) -> str:
    """A repo id the user typed: a clear error naming the format."""
    if not is_repo_id(repo_id):
        raise HubError(f"{repo_id[:120]!r} is not a Hub repo id.",
                       hint="Use namespace/name with letters, digits, '-', '_' or '.', "
                            "e.g. bartowski/Llama-3.2-1B-Instruct-GGUF.")  # fmt: skip
    return repo_id


def check_revision(revision: str) -> str:
    """A branch, tag or commit the user gave (``main``, ``v1.0``, ``refs/pr/3``)."""
    parts = revision.split("/")
    if (
        len(revision) > _REVISION_MAX
        or not _REVISION_RE.fullmatch(revision)
        or any(p in (".", "..") or p.startswith(".") or p.endswith(".lock") for p in parts)
        or ".." in revision
    ):
        raise HubError(f"{revision[:120]!r} is not a branch, tag or commit name.",
                       hint="Use a name like main, v1.0 or a 40-digit commit id.")  # fmt: skip
    return revision


def safe_relpath(path: str) -> PurePosixPath:
    """A repo file path that stays inside the snapshot folder; refuses ``..`` and absolute paths."""
    p = PurePosixPath(path)
    if (
        not path
        or "\0" in path
        or p.is_absolute()
        or ".." in p.parts
        or "\\" in path
        or path.startswith("~")
        or ":" in p.parts[0]
    ):
        raise HubError(f"Refusing the file name {path[:200]!r}: it would land outside the model folder.",
                       hint=HOSTILE_HINT)  # fmt: skip
    return p


def inside(root: Path, path: Path) -> Path:
    """``path`` if, with ``..`` and its folders' symlinks resolved, it stays inside ``root``; else a
    HubError. The last name is not followed: a snapshot file is a link to its blob, by design,
    and it is replaced, never written through."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path.parent)) / path.name
    if path.name in ("", ".", "..") or (real != real_root and real_root not in real.parents):
        raise hostile(f"{str(path)[:200]!r} is outside {root}")
    return path

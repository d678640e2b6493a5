"""Files written by strangers: whether a path is one we may open at all; and a damaged database
file moved aside, never deleted.

A model folder, a scanned cache or a checkpoint index may hold a pipe, a device, a folder or a
symlink loop where a file is expected; opening a pipe blocks until a writer comes, which may be
never. Every reader of such paths asks :func:`not_a_regular_file` first (``stat`` only).
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

NOT_REGULAR = "is not a regular file (a folder, pipe or device)"


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` (links followed) is not a file we may open — "is not a regular file (…)",
    "cannot be read (…)" — or None for a regular file. Nothing is opened."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:  # ELOOP for a symlink loop, EACCES, ENOENT for a dangling link
        return f"cannot be read ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else NOT_REGULAR


def move_aside(path: Path) -> Path:
    """Rename a damaged SQLite file (and its WAL companions) to ``<name>.corrupt-<timestamp>`` and
    return the new name; raises OSError when it cannot be moved."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(target)
    # A stale WAL would otherwise be replayed into the fresh file; keep it paired with its file.
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    return target

"""How to start TailorLM's own child processes, from source or from the packaged app.

From source a child is ``python -m app.engine.worker``. In a PyInstaller bundle there is no
``python``: ``sys.executable`` is TailorLM's own executable, which runs a module when started as
``TailorLM --child MODULE …`` (see ``app/__main__.py``). Tools that need a real Python
(the converter's environment) look for one on the system instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import BinaryIO

CHILD_FLAG = "--child"


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def module_command(module: str, *args: str) -> list[str]:
    """argv that runs ``module`` as ``__main__`` in a child process."""
    if frozen():
        return [sys.executable, CHILD_FLAG, module, *args]
    return [sys.executable, "-m", module, *args]


def private_stdout() -> BinaryIO:
    """In a child: a private copy of stdout for its JSON lines. fd 1 then points at stderr, so
    whatever a library prints (llama.cpp, ggml) cannot corrupt the message stream; and it works
    where ``sys.stdout`` is None (a windowed PyInstaller app)."""
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(answer_fd, "wb", buffering=0)


def system_python() -> str | None:
    """A Python interpreter that can create virtual environments: ours, or the system's when frozen."""
    if not frozen():
        return sys.executable
    return shutil.which("python3") or shutil.which("python")

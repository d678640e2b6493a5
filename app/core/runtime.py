"""How to start TailorLM's own child processes, from source or from the packaged app.

From source a child is ``python -m app.engine.worker``. In a PyInstaller bundle there is no
``python``: ``sys.executable`` is TailorLM's own executable, which runs a module when started as
``TailorLM --child MODULE …`` (see ``app/__main__.py``). Tools that need a real Python
(the converter's environment) look for one on the system instead.
"""

from __future__ import annotations

import shutil
import sys

CHILD_FLAG = "--child"


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def module_command(module: str, *args: str) -> list[str]:
    """argv that runs ``module`` as ``__main__`` in a child process."""
    if frozen():
        return [sys.executable, CHILD_FLAG, module, *args]
    return [sys.executable, "-m", module, *args]


def system_python() -> str | None:
    """A Python interpreter that can create virtual environments: ours, or the system's when frozen."""
    if not frozen():
        return sys.executable
    return shutil.which("python3") or shutil.which("python")

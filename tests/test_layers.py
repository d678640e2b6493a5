"""The architecture in the tree: app.core works with no Qt at all."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import app.core


def test_core_imports_without_qt() -> None:
    modules = [f"app.core.{m.name}" for m in pkgutil.iter_modules(app.core.__path__)]
    # Make any Qt import fail, import every core module, and check nothing pulled Qt in.
    code = (
        "import sys, importlib\n"
        "sys.modules['PySide6'] = None\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not any(m.startswith(('PySide6', 'app.gui', 'app.engine')) for m in sys.modules if sys.modules[m])\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_heavy_dependencies_load_lazily() -> None:
    # Fast start-up: importing the CLI and the estimator must not import llama_cpp, pynvml or the Hub client.
    code = (
        "import sys\n"
        "import app.cli, app.core.advice.estimate, app.core.advice.recommend, app.core.model.source\n"
        "bad = [m for m in ('llama_cpp', 'pynvml', 'huggingface_hub', 'PySide6') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

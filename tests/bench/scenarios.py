"""What the responsiveness benchmark does inside the app process while the stall probe runs
(imported by tests/bench/gui_responsiveness.py's child). Each scenario drives the real panels
the way a user would and calls ``finish`` when done."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _poll(check: Callable[[], bool], then: Callable[[], None], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s

    def tick() -> None:
        if check() or time.monotonic() > deadline:
            then()
        else:
            QTimer.singleShot(20, tick)

    tick()


def prepare(name: str, win: Any, ctx: Any) -> Callable[[Callable[[], None]], None]:
    """Build the panel and everything a user would already have before the probe starts; returns
    the action to measure, which calls its argument when done."""
    if name == "load_and_stream":
        from tests.models import smollm2_path

        panel = win.panel("chat")
        win.show_panel("chat")

        def stream(finish: Callable[[], None]) -> None:
            ctx.open_chat.emit(str(smollm2_path()), {"n_ctx": 2048, "n_gpu_layers": 0})

            def send() -> None:
                panel.settings_panel.max_tokens.setValue(200)
                panel.input.setPlainText("Write a short story about a lighthouse keeper.")
                panel.send()
                _poll(lambda: panel.state == "ready", finish)

            _poll(lambda: panel.state == "ready", send)

        return stream
    if name == "download":
        from app.core.hub.repo import list_gguf_files
        from tests.models import gemma3_path

        server = subprocess.Popen([sys.executable, "-m", "tests.fake_hub", "--rate-mib-s", "95", "bench/g-GGUF",
                                   str(gemma3_path())], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert server.stdout is not None
        os.environ["HF_ENDPOINT"] = server.stdout.readline().strip()
        lib = win.panel("library")
        win.show_panel("library")
        repo_file = list_gguf_files("bench/g-GGUF")[0]  # the user picked the file in the Hub tab

        def pull(finish: Callable[[], None]) -> None:
            row = lib.downloads.enqueue("bench/g-GGUF", repo_file)

            def done() -> None:
                server.terminate()
                finish()

            _poll(lambda: row.state in ("verified", "failed", "cancelled"), done)

        return pull
    raise ValueError(name)

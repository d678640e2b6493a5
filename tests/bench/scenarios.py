"""What the responsiveness benchmark does inside the app process while the stall probe runs
(imported by tests/bench/gui_responsiveness.py's child). Each scenario drives the real panels
the way a user would and calls ``finish(outcome)`` when done: ``""`` when it completed, else what
went wrong ("timed out after 300 s", "the download failed"). A scenario that did not complete is
a failure of the benchmark, never a stall figure."""

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


Finish = Callable[[str], None]
TIMEOUT_S = 300


def _poll(check: Callable[[], bool], then: Callable[[], None], timed_out: Finish) -> None:
    """``then()`` once ``check()`` holds; ``timed_out(why)`` if it does not within TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S

    def tick() -> None:
        if check():
            then()
        elif time.monotonic() > deadline:
            timed_out(f"timed out after {TIMEOUT_S} s")
        else:
            QTimer.singleShot(20, tick)

    tick()


def prepare(name: str, win: Any, ctx: Any) -> Callable[[Finish], None]:
    """Build the panel and everything a user would already have before the probe starts; returns
    the action to measure, which calls its argument when done."""
    if name == "load_and_stream":
        from tests.models import smollm2_path

        panel = win.panel("chat")
        win.show_panel("chat")

        def stream(finish: Finish) -> None:
            ctx.open_chat.emit(str(smollm2_path()), {"n_ctx": 2048, "n_gpu_layers": 0})

            def answered() -> None:
                failed = panel.error.isVisible() or not panel.view.answer_text().strip()
                finish(f"the answer failed: {panel.error.text()!r}" if failed else "")

            def send() -> None:
                if panel.model is None:  # the load failed: nothing was measured
                    finish(f"the model did not load: {panel.error.text()!r}")
                    return
                panel.settings_panel.max_tokens.setValue(200)
                panel.input.setPlainText("Write a short story about a lighthouse keeper.")
                panel.send()
                _poll(lambda: panel.state == "ready", answered, finish)

            _poll(lambda: panel.state in ("ready", "empty"), send, finish)

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

        def pull(finish: Finish) -> None:
            row = lib.downloads.enqueue("bench/g-GGUF", repo_file)

            def end(outcome: str) -> None:
                server.terminate()
                finish(outcome)

            def done() -> None:
                end("" if row.state == "verified" else f"the download ended {row.state}")

            _poll(lambda: row.state in ("verified", "failed", "cancelled"), done, end)

        return pull
    raise ValueError(name)

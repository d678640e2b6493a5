"""Screenshots of the panels with real data, light and dark, at a laptop's screen, a half-screen tile
and a desktop's, on a virtual X screen (Xvfb), for the README.

    bash scripts/screenshots.sh       # all of them: starts Xvfb, runs this once per size and theme
    DISPLAY=:77 QT_QPA_PLATFORM=xcb python scripts/screenshots.py --size 1366x768 --theme dark chat advisor

One run is one app process with a window of ``--size`` in the ``--theme`` colours, and a home of its
own (settings, library, chats). The app runs as a user would see it: the real hardware profile; the
Chat loads SmolLM2 from the test packages and answers a question (first, so the other panels show
a model loaded); the Advisor plans that file; the Library lists a folder with SmolLM2 and
Gemma-3-270M; the quantization panel draws a tensor's histogram. Each panel is captured once what
it shows has arrived (polled, not timed), as ``docs/screenshots/<panel>-<W>x<H>-<theme>.png``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "screenshots"
ORDER = ("chat", "machine", "advisor", "library", "quantviz", "convert")  # the chat first: a model loaded
PROMPT = "Write a Python function that checks whether a number is prime."
TENSOR = "blk.10.ffn_down.weight"
MACHINE_SAMPLES_S = 20.0  # the live charts take a sample a second: a line worth seeing after ~20 s
PNG_QUALITY = 0  # Qt's PNG writer: 0 = the strongest zlib compression (lossless either way)
TIMEOUT_S = 300.0


def _parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=_parse_size, default=(1366, 768), help="the window, WxH")
    ap.add_argument("--theme", choices=("light", "dark"), default="light")
    ap.add_argument("panels", nargs="*", help=f"any of {', '.join(ORDER)} (default: all)")
    args = ap.parse_args()
    started = time.monotonic()
    if set(args.panels) - set(ORDER):
        ap.error(f"no such panel: {', '.join(sorted(set(args.panels) - set(ORDER)))}")
    wanted = [p for p in ORDER if p in (args.panels or ORDER)]
    home = Path(tempfile.mkdtemp(prefix="tailorlm-shots-"))
    os.environ.update(TAILORLM_HOME=str(home / "tl"), HF_HUB_CACHE=str(home / "hub"), HOME=str(home),
                      HF_HUB_OFFLINE="1")  # fmt: skip
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.gui.context import THEME_KEY, AppContext
    from app.gui.main_window import MainWindow
    from tests.models import gemma3_path, smollm2_path

    app = QApplication(sys.argv)
    app.setStyle("Fusion")
    settings = QSettings(str(home / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue(THEME_KEY, args.theme)
    ctx = AppContext(settings)
    win = MainWindow(ctx)
    win.show()
    win.resize(*args.size)
    ctx.detect()
    models = home / "models"
    models.mkdir()
    for p in (smollm2_path(), gemma3_path()):
        if p.stat().st_dev == models.stat().st_dev:
            os.link(p, models / p.name)
        else:
            shutil.copy(p, models / p.name)
    OUT.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    w, h = args.size

    def panel(key: str) -> Any:
        win.show_panel(key)
        return win.panel(key)

    # each step: start it, then the check that says its data is on screen
    def chat() -> Callable[[], bool]:
        p = panel("chat")
        p.settings_panel.seed.setValue(7)  # the same answer every time
        p.settings_panel.max_tokens.setValue(200)
        ctx.open_chat.emit(str(smollm2_path()), {"n_ctx": 2048, "n_gpu_layers": 0})
        sent = {"done": False}

        def answered() -> bool:
            if p.state == "ready" and not sent["done"]:
                sent["done"] = True
                p.input.setPlainText(PROMPT)
                p.send()
                return False
            return sent["done"] and p.state == "ready"

        return answered

    def machine() -> Callable[[], bool]:
        panel("machine")
        t0 = time.monotonic()
        return lambda: time.monotonic() - t0 > MACHINE_SAMPLES_S

    def advisor() -> Callable[[], bool]:
        p = panel("advisor")
        p.advise_path(str(smollm2_path()))
        return lambda: p.result is not None

    def library() -> Callable[[], bool]:
        p = panel("library")
        p.add_folder(str(models))
        return lambda: not p.tasks and len(p.table_model.rows) >= 2

    def quantviz() -> Callable[[], bool]:
        p = panel("quantviz")
        p.open_path(str(smollm2_path()))
        picked = {"done": False}

        def drawn() -> bool:
            if p.tensors and not picked["done"]:
                picked["done"] = True
                p.select_tensor(TENSOR)
            c = p.comparison
            return picked["done"] and c is not None and c.tensor == TENSOR

        return drawn

    def convert() -> Callable[[], bool]:
        panel("convert")
        return lambda: True

    steps = {"chat": chat, "machine": machine, "advisor": advisor, "library": library,
             "quantviz": quantviz, "convert": convert}  # fmt: skip
    queue = list(wanted)
    state: dict[str, Any] = {"check": None, "key": None, "since": 0.0, "failed": ""}

    def tick() -> None:
        if state["check"] is None:
            if not queue:
                app.quit()
                return
            state["key"] = queue.pop(0)
            state["check"], state["since"] = steps[state["key"]](), time.monotonic()
        elif state["check"]():
            key = state["key"]
            QTimer.singleShot(800, lambda: shoot(key))  # the last repaint (a streamed answer's tail)
            state["check"] = "shooting"
            return
        elif time.monotonic() - state["since"] > TIMEOUT_S:
            state["failed"] = f"{state['key']}: its data did not arrive in {TIMEOUT_S:.0f} s"
            app.quit()
            return
        QTimer.singleShot(200, tick)

    def shoot(key: str) -> None:
        name = f"{key}-{w}x{h}-{args.theme}.png"
        image = win.grab()
        if (image.width(), image.height()) != (w, h):  # the window would not shrink to the size asked
            sys.stderr.write(f"{name}: the window is {image.width()}x{image.height()}\n")
        image.save(str(OUT / name), "PNG", PNG_QUALITY)
        written.append(name)
        state["check"] = None
        tick()

    QTimer.singleShot(1000, tick)
    app.exec()
    from app.gui.workers import shutdown_workers

    for widget in win.panels.values():
        getattr(widget, "shutdown", lambda: None)()
    shutdown_workers()
    shutil.rmtree(home, ignore_errors=True)
    if state["failed"]:
        sys.stderr.write(f"screenshots: {state['failed']}\n")
        return 1
    sys.stdout.write(f"wrote {', '.join(written)} in {time.monotonic() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

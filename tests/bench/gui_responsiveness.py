"""The desktop app's quality bars, measured: time until the window is shown, idle memory, and the
longest stall of the event loop while a model loads, tokens stream and a download runs.

    python tests/bench/gui_responsiveness.py [--rounds 3]

Each round starts a fresh app process (offscreen Qt), so start time includes Python's start and
every import. Prints JSON; the README quotes the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, os, sys, time
import psutil
born = psutil.Process().create_time()
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv)
from app.gui.context import AppContext
from app.gui.main_window import MainWindow
from app.gui.probe import StallProbe

ctx = AppContext()
win = MainWindow(ctx)
win.show()
out = {}

def shown():
    out["startup_s"] = round(time.time() - born, 3)
    ctx.detect()
    QTimer.singleShot(3000, idle)

def idle():
    out["idle_rss_mib"] = round(psutil.Process().memory_info().rss / 2**20, 1)
    scenario = os.environ.get("SCENARIO", "")
    if not scenario:
        finish()
        return
    import scenarios
    action = scenarios.prepare(scenario, win, ctx)
    probe = StallProbe(5)
    QTimer.singleShot(500, lambda: (probe.start(), action(lambda: (out.update({scenario: probe.stop()}), finish()))))

def finish():
    print(json.dumps(out), flush=True)
    app.quit()

QTimer.singleShot(0, shown)
app.exec()
"""


def run_child(scenario: str, env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600, check=False,
                         cwd=ROOT, env={**env, "SCENARIO": scenario,
                                        "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}"})  # fmt: skip
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the app process failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tailorlm-gui-bench-"))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "TAILORLM_HOME": str(home),
           "HF_HUB_CACHE": str(home / "hub")}  # fmt: skip
    runs = [run_child("", env) for _ in range(args.rounds)]
    report: dict[str, object] = {
        "benchmark": "gui_responsiveness",
        "startup_s": statistics.median(float(r["startup_s"]) for r in runs),  # type: ignore[arg-type]
        "idle_rss_mib": statistics.median(float(r["idle_rss_mib"]) for r in runs),  # type: ignore[arg-type]
        "per_round": runs,
    }
    for scenario in ("load_and_stream", "download"):
        report[scenario] = run_child(scenario, env)[scenario]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

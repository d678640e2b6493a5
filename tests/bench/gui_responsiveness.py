"""The desktop app's quality bars, measured: time until the window is shown, idle memory, and the
longest stall of the event loop while a model loads, tokens stream and a download runs.

    python tests/bench/gui_responsiveness.py [--rounds 3] [--out FILE]

Each round starts three fresh app processes (offscreen Qt): one that only starts and idles, one
that loads SmolLM2 in the Chat and streams a 200-token answer, one that downloads a 241 MiB file
from a local Hub at 95 MB/s. The window time runs from just before the process is created to the
window's first event-loop turn (Python's start and every import included); each process measures
it and the idle RSS, so they have three samples per round. Prints JSON (``--out`` also
writes it): each figure's median, min and max over the rounds, the targets and whether each holds,
and the machine (CPU, cores, load before and after). The README's table is written from it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import PySide6  # noqa: E402

from tests.bench.stop_latency import machine  # noqa: E402

# The bars (issue 14, "Proof"): the window within 1 s of the start (median), idle RSS at
# most 150 MB (10^6 bytes; every process), no event-loop stall above 50 ms (any round).
WINDOW_S = 1.0
IDLE_RSS_MB = 150.0
STALL_MS = 50.0
SCENARIOS = ("load_and_stream", "download")

CHILD = r"""
import json, os, sys, time
born = float(os.environ["BENCH_SPAWNED_AT"])  # the parent's clock just before it started us
import psutil
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
    def ended(outcome):
        out[scenario] = {**probe.stop(), "completed": not outcome, "outcome": outcome or "completed"}
        finish()
    QTimer.singleShot(500, lambda: (probe.start(), action(ended)))

def finish():
    print(json.dumps(out), flush=True)
    app.quit()

QTimer.singleShot(0, shown)
app.exec()
"""


def run_child(scenario: str, warm_cache: Path) -> dict[str, Any]:
    """One app process with a home of its own: no settings, library, chats or downloads of an
    earlier process (a remembered chat model or a finished download would change what it does) —
    only ``warm_cache``, the cache folder (machine probe, memory bandwidth) of the processes before."""
    home = Path(tempfile.mkdtemp(prefix="tailorlm-gui-bench-"))
    if warm_cache.is_dir():
        shutil.copytree(warm_cache, home / "tl" / "cache")
    # bytecode is cached, as in any installed app (a sandbox's PYTHONDONTWRITEBYTECODE would make
    # every start compile the app's modules again: ~0.1 s here)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(QT_QPA_PLATFORM="offscreen", TAILORLM_HOME=str(home / "tl"), HOME=str(home),
               XDG_CONFIG_HOME=str(home / "config"), HF_HUB_CACHE=str(home / "hub"), SCENARIO=scenario,
               PYTHONPATH=f"{ROOT}{os.pathsep}{Path(__file__).parent}")  # fmt: skip
    # The start is timed from just before the process is created, on this clock: psutil's create_time
    # counts from the kernel's boot time, which /proc/stat gives in whole seconds (measured here:
    # 0.67 s late, a constant error of up to a second in every start time).
    env["BENCH_SPAWNED_AT"] = repr(time.time())
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600, check=False,
                         cwd=ROOT, env=env)  # fmt: skip
    if not warm_cache.is_dir() and (home / "tl" / "cache").is_dir():
        shutil.copytree(home / "tl" / "cache", warm_cache)
    shutil.rmtree(home, ignore_errors=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"the app process failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def spread(values: list[float]) -> dict[str, Any]:
    """The median and the range of one figure over the rounds (and every value, in run order)."""
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values),
            "values": values}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    warm = Path(tempfile.mkdtemp(prefix="tailorlm-gui-bench-cache-")) / "cache"
    run_child("", warm)  # not counted: fills the cache, as any start after the first finds it
    before = machine()
    runs: list[dict[str, Any]] = []
    for rnd in range(args.rounds):  # interleaved: the shared machine's noise falls on all alike
        for scenario in ("", *SCENARIOS):
            runs.append({"round": rnd + 1, "scenario": scenario or "idle", **run_child(scenario, warm)})
    shutil.rmtree(warm.parent, ignore_errors=True)
    startup = spread([float(r["startup_s"]) for r in runs])
    rss_mib = spread([float(r["idle_rss_mib"]) for r in runs])
    report: dict[str, Any] = {
        "benchmark": "gui_responsiveness",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {**before, "load_avg_1min_after": machine()["load_avg_1min"]},
        "pyside6": PySide6.__version__,
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "rounds": args.rounds,
        "targets": {"startup_s": WINDOW_S, "idle_rss_mb": IDLE_RSS_MB, "max_stall_ms": STALL_MS},
        "startup_s": startup,
        "idle_rss_mib": rss_mib,
    }
    failures = [{"round": r["round"], "scenario": r["scenario"], "outcome": r[r["scenario"]]["outcome"]}
                for r in runs if r["scenario"] in SCENARIOS and not r[r["scenario"]].get("completed")]  # fmt: skip
    for scenario in SCENARIOS:
        # only completed runs give a stall figure: a load that failed at once stalls nothing
        mine = [r[scenario] for r in runs if r["scenario"] == scenario and r[scenario].get("completed")]
        report[scenario] = {
            key: spread([float(m[key]) for m in mine]) if mine else None
            for key in ("max_stall_ms", "p99_stall_ms", "ticks")
        }
    report["failures"] = failures
    report["holds"] = {
        "startup_s": startup["median"] <= WINDOW_S,
        "idle_rss_mb": rss_mib["max"] * 2**20 / 1e6 <= IDLE_RSS_MB,
        "max_stall_ms": all(
            report[s]["max_stall_ms"] is not None and report[s]["max_stall_ms"]["max"] <= STALL_MS
            for s in SCENARIOS
        ),
        "every_scenario_completed": not failures,
    }
    report["per_process"] = runs
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if all(report["holds"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

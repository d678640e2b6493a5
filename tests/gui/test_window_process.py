"""No llama.cpp and no NVML in the window's process: the main window, the Machine panel and the
hardware detection run — and llama.cpp's offload probe and NVML ran in child processes instead.

In a fresh interpreter, so that the imports of other tests in this one do not count."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys, time
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

app = QApplication([])
from app.gui.context import AppContext
from app.gui.main_window import MainWindow
from app.gui.workers import shutdown_workers

ctx = AppContext(QSettings(sys.argv[1], QSettings.Format.IniFormat))
window = MainWindow(ctx)
window.show()
window.show_panel("machine")
ctx.detect()
panel = window.panel("machine")
deadline = time.monotonic() + 90
while (ctx.profile is None or len(panel.ram_chart.values) < 2) and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.02)
loaded = [m for m in ("llama_cpp", "pynvml") if m in sys.modules]
result = {"loaded": loaded, "profile": ctx.profile is not None, "samples": len(panel.ram_chart.values),
          "offload_installed": ctx.profile.offload.installed if ctx.profile else None,
          "cpu_devices": [d.name for d in ctx.profile.offload.devices] if ctx.profile else []}
window.close()
shutdown_workers(10_000)
print(json.dumps(result))
"""


def test_the_window_never_loads_llama_cpp_nor_nvml(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "settings.ini")], capture_output=True,
                         text=True, cwd=ROOT, timeout=180, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.splitlines()[-1])
    # the profile arrived and the charts filled: detection and sampling really ran
    assert result["profile"] and result["samples"] >= 2
    # ... and what only llama.cpp knows is in it, asked by the probe child
    assert result["offload_installed"] and "CPU" in result["cpu_devices"]
    assert result["loaded"] == []

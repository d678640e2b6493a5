"""The window as a user meets it: it opens fast on the panel they left, every panel builds, errors
land in the banner in plain words, and the status bar shows the model process's numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from app.gui.context import AppContext
from app.gui.main_window import PANELS, MainWindow


@pytest.fixture
def window(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(AppContext(settings))
    qtbot.addWidget(win)
    win.show()
    return win


def test_every_panel_builds_with_an_accessible_name(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    for key, title, _ in PANELS:
        window.show_panel(key)
        qtbot.waitUntil(lambda key=key: key in window.panels, timeout=10_000)
        assert window.stack.currentWidget() is window.panels[key]
        assert window.panels[key].accessibleName() == title


def test_errors_show_in_the_banner_without_a_traceback(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.core.errors import ModelNotFoundError
    from app.gui.workers import run_task

    def fail(report: object, cancel: object) -> None:
        raise ModelNotFoundError("No model named 'x'.", hint="Pick one from the library.")

    run_task(fail, on_failed=lambda m, h, c: window.ctx.error.emit(m, h))
    qtbot.waitUntil(window.banner.isVisible, timeout=5000)
    assert "No model named" in window.banner.text.text() and "Pick one" in window.banner.text.text()
    assert "Traceback" not in window.banner.text.text()


def test_status_bar_shows_measured_and_predicted_memory(window: MainWindow) -> None:
    window.ctx.engine_metrics.emit({"gen_tok_s": 41.5, "ttft_ms": 120, "rss_bytes": 300 << 20,
                                    "predicted_ram_bytes": 310 << 20})  # fmt: skip
    text = window._metrics.text()
    assert "41.5 tok/s" in text and "first token 120 ms" in text and "predicted 310 MiB" in text


def test_the_last_panel_and_geometry_come_back(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    first = MainWindow(AppContext(settings))
    qtbot.addWidget(first)
    first.show()
    first.show_panel("machine")
    first.close()
    again = MainWindow(AppContext(settings))
    qtbot.addWidget(again)
    assert PANELS[again.nav.currentRow()][0] == "machine"


def test_without_a_display_python_m_app_says_so() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True, env=env, check=False,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert out.returncode == 2 and "no display" in out.stderr

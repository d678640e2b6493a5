"""The window as a user meets it: it opens fast on the panel they left, every panel builds, errors
land in the banner in plain words, the status bar shows the model process's numbers, and a panel's
request of another (Advise, Download and chat, Convert) reaches it through the window."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from app.gui.context import AppContext
from app.gui.main_window import PANELS, MainWindow
from app.gui.workers import start_worker, wait_for_workers

WAIT_MS = 30_000  # the hardware detection measures the RAM bandwidth on a busy 2-core machine


@pytest.fixture
def window(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(AppContext(settings))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()  # the panels stop their work; the hardware detection cannot be stopped: wait
    wait_for_workers(WAIT_MS)


def test_every_panel_builds_with_an_accessible_name(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    for key, title, _ in PANELS:
        window.show_panel(key)
        qtbot.waitUntil(lambda key=key: key in window.panels, timeout=10_000)
        assert window.stack.currentWidget() is window.panels[key]
        assert window.panels[key].accessibleName() == title


def test_errors_show_in_the_banner_without_a_traceback(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.core.errors import ModelNotFoundError

    def fail(report: object, cancel: object) -> None:
        raise ModelNotFoundError("No model named 'x'.", hint="Pick one from the library.")

    start_worker(fail, owner=window, on_error=lambda m, h, c: window.ctx.error.emit(m, h))
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
    again.close()
    wait_for_workers(WAIT_MS)  # the first window's hardware detection


def test_advise_in_the_library_sizes_the_model_up_in_the_advisor(  # type: ignore[no-untyped-def]
    window: MainWindow, qtbot, smollm2_path: Path
) -> None:
    window.show_panel("library")
    library = window.panels["library"]
    library.advise_requested.emit(str(smollm2_path))  # what its "Advise" button sends
    advisor = window.panels["advisor"]
    assert window.stack.currentWidget() is advisor
    qtbot.waitUntil(lambda: advisor.result is not None, timeout=WAIT_MS)
    assert advisor.model.source == str(smollm2_path) and advisor.stack.currentIndex() == 1


def test_the_advisors_convert_fills_the_convert_panel(window: MainWindow, qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "SmolLM2-135M-Instruct"
    folder.mkdir()
    advisor = window.panel("advisor")
    advisor.convert_requested.emit(str(folder), "Q5_K_M")  # what "Convert to Q5_K_M" sends
    convert = window.panels["convert"]
    assert window.stack.currentWidget() is convert
    assert convert.folder.text() == str(folder) and convert.target.currentText() == "Q5_K_M"
    qtbot.waitUntil(lambda: "config.json" in convert.facts.text(), timeout=WAIT_MS)  # it was checked


def test_the_advisors_download_and_chat_queues_the_pull_in_the_library(  # type: ignore[no-untyped-def]
    window: MainWindow, qtbot, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    from tests.fake_hub import fake_hub

    name = "SmolLM2-135M-Instruct-Q4_1.gguf"
    with fake_hub({"acme/smol-GGUF": {name: smollm2_path}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        advisor = window.panel("advisor")
        advisor.pull_requested.emit({"repo_id": "acme/smol-GGUF", "quant": "Q4_1", "n_ctx": 2048})
        library = window.panels["library"]
        assert window.stack.currentWidget() is library
        qtbot.waitUntil(lambda: len(library.downloads.rows) == 1, timeout=WAIT_MS)
        [row] = library.downloads.rows
        assert row.repo == "acme/smol-GGUF" and row.repo_file.file.first == name
        qtbot.waitUntil(lambda: row.state in ("verified", "failed"), timeout=WAIT_MS)
    assert row.state == "verified", row.status.text()


def test_without_a_display_python_m_app_says_so() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True, env=env, check=False,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert out.returncode == 2 and "no display" in out.stderr


def test_ctrl_q_quits_the_window_and_saves_its_state(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QKeySequence

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    win = MainWindow(AppContext(settings))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=5_000)
    assert QKeySequence("Ctrl+Q") in win.quit_action.shortcuts()
    assert (
        win.quit_action.text() == "&Quit" and win.quit_action in win.menuBar().actions()[0].menu().actions()
    )
    win.show_panel("convert")
    qtbot.keyClick(win, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=5_000)
    assert settings.value("window/panel") == "convert"  # closed the way the close button closes it
    wait_for_workers(WAIT_MS)


def test_about_names_the_versions_and_the_licence(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    from PySide6.QtCore import qVersion
    from PySide6.QtWidgets import QMessageBox

    import app

    window.about_action.trigger()  # Help → About TailorLM
    box = next(w for w in window.findChildren(QMessageBox) if w.windowTitle() == "About TailorLM")
    qtbot.waitUntil(box.isVisible, timeout=5_000)
    text = box.text()
    assert f"TailorLM {app.__version__}" in text and version("tailorlm") == app.__version__
    assert f"llama-cpp-python {version('llama-cpp-python')}" in text
    assert qVersion() in text and "Apache-2.0" in text
    box.close()

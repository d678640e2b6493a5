"""The Convert panel with llama.cpp's real converter (the shared environment conftest points at) and a
real checkpoint rebuilt from SmolLM2: a folder without config.json is refused in plain words, a
conversion to Q8_0 ends with the file, its sample and its library id, and a cancel keeps nothing."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.core import paths
from app.core.build.convert import converter_ready
from app.core.library.registry import Library
from app.gui.context import AppContext
from app.gui.panels.convert import ConvertPanel, rough_seconds
from app.gui.workers import wait_for_workers
from tests.hf_checkpoint import build_checkpoint


@pytest.fixture(scope="module")
def checkpoint(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not converter_ready():
        pytest.fail("llama.cpp's converter is not set up: run `python -m app.cli convert --setup`")
    return build_checkpoint(smollm2_path, tmp_path_factory.mktemp("ckpt") / "SmolLM2-135M-Instruct")


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path):
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = ConvertPanel(ctx)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitUntil(lambda: widget.ready is not None, timeout=30_000)
    yield widget
    widget.shutdown()
    wait_for_workers(30_000)


def _choose(panel: ConvertPanel, qtbot: QtBot, folder: Path, to: str) -> None:
    panel.target.setCurrentText(to)
    panel.set_folder(str(folder))  # what Browse… calls once the dialog returns
    qtbot.waitUntil(lambda: panel.convert_button.isEnabled(), timeout=30_000)


def test_a_folder_without_config_json_is_refused_in_plain_words(
    panel: ConvertPanel, qtbot: QtBot, tmp_path: Path
) -> None:
    assert panel.ready and panel.setup_box.isHidden()  # the shared converter environment is set up
    (tmp_path / "weights").mkdir()
    panel.set_folder(str(tmp_path / "weights"))
    qtbot.waitUntil(
        lambda: "config.json" in panel.facts.text(), timeout=30_000
    )  # the first asks the converter
    assert "not a Hugging Face checkpoint" in panel.facts.text() and "Traceback" not in panel.facts.text()
    assert not panel.convert_button.isEnabled()


def test_convert_to_q8_0_shows_the_result_and_registers_it(
    panel: ConvertPanel, qtbot: QtBot, checkpoint: Path
) -> None:
    _choose(panel, qtbot, checkpoint, "Q8_0")
    assert "LlamaForCausalLM" in panel.facts.text() and "F32" in panel.facts.text()
    assert (
        "at Q8_0" in panel.prediction.text() and "SmolLM2-135M-Instruct-Q8_0.gguf" in panel.prediction.text()
    )
    stages: list[str] = []
    show = panel._progress
    panel._progress = lambda p: (stages.append(p.stage), show(p))  # type: ignore[method-assign]
    panel.convert_button.click()
    assert panel.cancel_button.isEnabled() and not panel.convert_button.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=60_000)
    assert panel.result is not None, panel.stage.text()
    out = paths.data_dir() / "models" / "SmolLM2-135M-Instruct-Q8_0.gguf"
    assert panel.result.path == out and out.is_file()
    text = panel.result_label.text()
    assert str(out) in text and panel.result.library_id in text
    sample = html.escape(panel.result.sample.strip())
    assert sample and sample in text  # the words it wrote, whatever they are on this CPU
    assert Library().find(panel.result.library_id).path == out
    assert not panel.result_box.isHidden() and panel.bar.value() == 1000
    assert "convert" in stages and "check" in stages
    with qtbot.waitSignal(panel.ctx.open_chat) as chat:
        panel.chat_button.click()
    assert chat.args == [str(out), {}]
    assert not panel.convert_button.isEnabled()  # the file exists now


def test_cancel_mid_conversion_leaves_no_file(panel: ConvertPanel, qtbot: QtBot, checkpoint: Path) -> None:
    _choose(panel, qtbot, checkpoint, "Q8_0")
    panel.convert_button.click()
    qtbot.waitUntil(lambda: panel.bar.value() > 0, timeout=30_000)  # the converter is reading tensors
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=30_000)
    assert panel.stage.text() == "Cancelled; nothing was kept." and panel.result is None
    models = paths.data_dir() / "models"
    assert not list(models.glob("*")) if models.exists() else True
    assert panel.convert_button.isEnabled()


def test_the_time_estimate_follows_the_benchmark() -> None:
    # the README's SmolLM2 row: 538 MB of F32 converted straight to Q8_0 in 8.7 s (+ the check)
    assert 8 < rough_seconds(538_000_000, 270_900_000, direct=True) < 14
    assert rough_seconds(538_000_000, 270_900_000, direct=False) > rough_seconds(
        538_000_000, 270_900_000, direct=True
    )


def test_every_control_is_named_and_reachable_by_keyboard(panel: ConvertPanel) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QComboBox, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QTableView

    kinds = (QPushButton, QLineEdit, QComboBox, QTableView, QPlainTextEdit, QProgressBar)
    controls = [w for kind in kinds for w in panel.findChildren(kind)]
    assert len(controls) >= 8
    for w in controls:
        assert w.accessibleName(), w
        assert isinstance(w, QProgressBar) or w.focusPolicy() != Qt.FocusPolicy.NoFocus, w.accessibleName()

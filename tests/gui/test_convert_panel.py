"""The Convert panel with llama.cpp's real converter (the shared environment conftest points at) and a
real checkpoint rebuilt from SmolLM2: a folder without config.json is refused in plain words, a
conversion to Q4_K_M moves one bar forward through its three stages and ends on the file, its
size, its sample and its library id (not on "this file already exists"), and a cancel keeps nothing."""

from __future__ import annotations

import html
import itertools
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.core import paths
from app.core.build.convert import converter_ready
from app.core.library.registry import Library
from app.core.units import format_bytes
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


def test_convert_to_q4_k_m_moves_one_bar_forward_and_ends_on_the_result(
    panel: ConvertPanel, qtbot: QtBot, checkpoint: Path
) -> None:
    # Q4_K_M goes through all three stages: the converter (F16), the quantizer, the check
    _choose(panel, qtbot, checkpoint, "Q4_K_M")
    assert "LlamaForCausalLM" in panel.facts.text() and "F32" in panel.facts.text()
    assert (
        "at Q4_K_M" in panel.prediction.text()
        and "SmolLM2-135M-Instruct-Q4_K_M.gguf" in panel.prediction.text()
    )
    seen: list[tuple[str, float, int, str]] = []  # stage, its own fraction, the bar, the words
    show = panel._progress

    def record(p: object) -> None:
        show(p)
        seen.append((p.stage, p.fraction, panel.bar.value(), panel.stage.text()))  # type: ignore[attr-defined]

    panel._progress = record  # type: ignore[method-assign]
    panel.convert_button.click()
    assert panel.cancel_button.isEnabled() and not panel.convert_button.isEnabled()
    qtbot.waitUntil(lambda: panel.task is None, timeout=120_000)
    assert panel.result is not None, panel.stage.text()

    # one bar for the whole: it never drops back when a stage starts, and each stage is named
    stages = [s for s, _, _, _ in seen]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "convert",
        "quantize",
        "check",
    ]
    bars = [b for _, _, b, _ in seen]
    assert all(b2 >= b1 for b1, b2 in itertools.pairwise(bars)), bars
    first_quantize = next(b for s, _, b, _ in seen if s == "quantize")
    assert first_quantize > 300  # the convert stage's share is kept, not reset to 0 %
    for stage, words in (("convert", "Step 1 of 3 — Converting"), ("quantize", "Step 2 of 3 — Quantizing"),
                         ("check", "Step 3 of 3 — Checking")):  # fmt: skip
        assert any(words in text and "in all" in text for s, _, _, text in seen if s == stage), stage
    assert panel.bar.value() == 1000

    # the result, registered, with what to do next; no warning that "the file already exists"
    out = paths.data_dir() / "models" / "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert panel.result.path == out and out.is_file()
    text = panel.result_label.text()
    assert str(out) in text and panel.result.library_id in text
    assert format_bytes(out.stat().st_size) in text and "at Q4_K_M" in text
    sample = html.escape(panel.result.sample.strip())
    assert sample and sample in text  # the words it wrote, whatever they are on this CPU
    assert Library().find(panel.result.library_id).path == out
    assert not panel.result_box.isHidden()
    assert "already exists" not in panel.prediction.text() and "made just now" in panel.prediction.text()
    panel.target.setCurrentText("Q8_0")  # another precision: its own file does not exist
    qtbot.waitUntil(lambda: "Q8_0.gguf" in panel.prediction.text(), timeout=30_000)
    panel.target.setCurrentText("Q4_K_M")  # and back: still the result, not a warning
    qtbot.waitUntil(lambda: "Q4_K_M.gguf" in panel.prediction.text(), timeout=30_000)
    assert "already exists" not in panel.prediction.text() and "made just now" in panel.prediction.text()
    assert not panel.convert_button.isEnabled()  # the file exists now
    with qtbot.waitSignal(panel.advise_requested) as advise:
        panel.advise_button.click()
    assert advise.args == [str(out)]
    with qtbot.waitSignal(panel.ctx.open_chat) as chat:
        panel.chat_button.click()
    assert chat.args == [str(out), {}]


def test_the_bar_weighs_each_stage_by_its_expected_time() -> None:
    from app.gui.panels.convert import stage_seconds
    from app.gui.panels.convert_progress import OverallProgress

    seconds = stage_seconds(538_000_000, 270_900_000, direct=False)
    bar = OverallProgress(seconds)
    assert bar.stages == ("convert", "quantize", "check")
    assert bar.update("convert", 1.0) == pytest.approx(seconds["convert"] / sum(seconds.values()))
    assert bar.update("quantize", 0.0) == pytest.approx(seconds["convert"] / sum(seconds.values()))
    assert bar.update("convert", 0.2) == bar.fraction  # a late report never moves it back
    assert bar.update("check", 1.0) == pytest.approx(1.0)
    direct = OverallProgress(stage_seconds(538_000_000, 270_900_000, direct=True))
    assert direct.stages == ("convert", "check")  # Q8_0 is written by the converter itself
    assert "Step 2 of 2" in direct.text("check", 0.0)


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

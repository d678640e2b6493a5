"""The Convert panel with llama.cpp's real converter (the shared environment conftest points at) and a
real checkpoint rebuilt from SmolLM2: a folder without config.json is refused in plain words, a
conversion to Q4_K_M moves one bar forward through its three stages and ends on the file, its
size, its sample and its library id (not on "this file already exists"), and a cancel keeps nothing.
From the SmolLM2 GGUF itself: a type that needs an importance matrix says so in words beside a
greyed Convert and offers to make one; made now (one short chunk), with the attention values and
token embeddings kept at Q8_0, it gives a Q2_K file whose tensor table shows the kept types, with
the matrix beside it and its size as predicted, to the byte."""

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
from app.gui.panels.convert import ConvertPanel
from app.gui.panels.convert_plan import rough_seconds
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
    panel.set_input(str(folder))  # what Browse… calls once the dialog returns
    qtbot.waitUntil(lambda: panel.convert_button.isEnabled(), timeout=30_000)


def test_a_folder_without_config_json_is_refused_in_plain_words(
    panel: ConvertPanel, qtbot: QtBot, tmp_path: Path
) -> None:
    assert panel.ready and panel.setup.isHidden()  # the shared converter environment is set up
    (tmp_path / "weights").mkdir()
    panel.set_input(str(tmp_path / "weights"))
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
    from app.gui.panels.convert_plan import stage_seconds
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
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QLineEdit,
        QPlainTextEdit,
        QProgressBar,
        QPushButton,
        QSpinBox,
        QTableView,
    )

    kinds = (QPushButton, QLineEdit, QComboBox, QTableView, QPlainTextEdit, QProgressBar, QSpinBox, QCheckBox)
    # (a spin box's own line edit is Qt's, named through the spin box)
    controls = [w for kind in kinds for w in panel.findChildren(kind) if not w.objectName().startswith("qt_")]
    assert len(controls) >= 16
    for w in controls:
        assert w.accessibleName(), w
        assert isinstance(w, QProgressBar) or w.focusPolicy() != Qt.FocusPolicy.NoFocus, w.accessibleName()


# --- from a GGUF: the importance matrix and the tensors kept ----------------------------------------


def _choose_gguf(panel: ConvertPanel, qtbot: QtBot, gguf: Path, to: str) -> None:
    panel.target.setCurrentText(to)
    panel.set_input(str(gguf))  # what GGUF… or the library list calls
    qtbot.waitUntil(lambda: panel.prediction_result is not None, timeout=30_000)


def test_a_type_that_needs_a_matrix_says_why_convert_is_off_and_offers_one(
    panel: ConvertPanel, qtbot: QtBot, smollm2_path: Path
) -> None:
    _choose_gguf(panel, qtbot, smollm2_path, "IQ2_XS")
    assert "Q4_1 weights" in panel.facts.text() and "GGUF" in panel.facts.text()
    assert not panel.convert_button.isEnabled()
    why = panel.why.text()
    assert panel.why.isVisibleTo(panel) and "IQ2_XS needs an importance matrix" in why
    assert "make one now" in why and panel.make_button.isVisibleTo(panel)
    panel.make_button.click()  # the offer: the matrix will be made first
    assert panel.options.choice().kind == "make"
    qtbot.waitUntil(panel.convert_button.isEnabled, timeout=30_000)
    assert not panel.why.isVisibleTo(panel) and not panel.make_button.isVisibleTo(panel)
    assert "at IQ2_XS" in panel.prediction.text()
    panel.options.picker.choose_none()  # and back: the reason again
    qtbot.waitUntil(lambda: not panel.convert_button.isEnabled() and "needs an importance matrix" in panel.why.text(),
                    timeout=30_000)  # fmt: skip
    panel.target.setCurrentText("Q2_K")  # a type that does not need one
    qtbot.waitUntil(panel.convert_button.isEnabled, timeout=30_000)
    assert not panel.why.isVisibleTo(panel)
    panel.options.extra.setText("attn_v=Q9_9")  # a bad PATTERN=TYPE item: its own reason
    panel.options.extra.editingFinished.emit()
    qtbot.waitUntil(lambda: "Q9_9" in panel.why.text(), timeout=30_000)
    assert not panel.convert_button.isEnabled()


def test_a_matrix_made_now_and_kept_tensors_show_in_the_file(
    panel: ConvertPanel, qtbot: QtBot, smollm2_path: Path
) -> None:
    from app.core.model.gguf_header import read_gguf_file

    _choose_gguf(panel, qtbot, smollm2_path, "Q2_K")
    opts = panel.options
    assert not opts.presets["output"].isEnabled()  # SmolLM2 ties its output layer to the embeddings
    opts.presets["token_embd"].setChecked(True)
    opts.presets["attn_v"].setChecked(True)
    opts.picker.choose_make()
    opts.picker.chunk_tokens.setValue(64)  # one short chunk: seconds, not minutes
    opts.picker.chunks.setValue(1)
    qtbot.waitUntil(
        lambda: panel.convert_button.isEnabled() and panel.prediction_result is not None, timeout=30_000
    )
    predicted = panel.prediction_result
    assert predicted is not None
    stages: list[tuple[str, int, str]] = []
    show = panel._progress

    def record(p: object) -> None:
        show(p)
        stages.append((p.stage, panel.bar.value(), panel.stage.text()))  # type: ignore[attr-defined]

    panel._progress = record  # type: ignore[method-assign]
    panel.convert_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=120_000)
    assert panel.result is not None, panel.stage.text()
    names = [s for s, _, _ in stages]
    assert [s for i, s in enumerate(names) if i == 0 or names[i - 1] != s] == ["imatrix", "quantize", "check"]
    assert any("Step 1 of 3 — Making the importance matrix" in text for _, _, text in stages)
    bars = [b for _, b, _ in stages]
    assert all(b2 >= b1 for b1, b2 in itertools.pairwise(bars)), bars

    out = panel.result.path
    matrix = out.with_name(f"{out.stem}.imatrix.gguf")
    assert matrix.is_file()  # beside the output, to reuse
    header = read_gguf_file(out)
    types = {t.name: t.type_name for t in header.tensors}
    assert types["token_embd.weight"] == "Q8_0"
    attn_v = [t for n, t in types.items() if n.endswith("attn_v.weight")]
    assert attn_v and set(attn_v) == {"Q8_0"}
    assert types["blk.0.ffn_down.weight"] != "Q8_0" and types["blk.0.attn_output.weight"] != "Q8_0"
    assert header.metadata["quantize.imatrix.file"] == matrix.name
    assert out.stat().st_size == predicted.size_bytes  # the Output line was right, to the byte
    text = panel.result_label.text()
    assert matrix.name in text and "made now" in text and "Tensor types:" in text and "Q8_0 × " in text
    assert Library().find(panel.result.library_id).path == out


def test_a_matrix_made_now_from_a_checkpoint_is_measured_on_its_16_bit_conversion(
    panel: ConvertPanel, qtbot: QtBot, checkpoint: Path
) -> None:
    from app.core.model.gguf_header import read_gguf_file

    _choose(panel, qtbot, checkpoint, "Q2_K")  # the converter is needed: the folder waits for it
    panel.options.presets["attn_v"].setChecked(True)
    panel.options.picker.choose_make()
    panel.options.picker.chunk_tokens.setValue(64)
    panel.options.picker.chunks.setValue(1)
    qtbot.waitUntil(
        lambda: panel.convert_button.isEnabled() and panel.prediction_result is not None, timeout=30_000
    )
    stages: list[str] = []
    show = panel._progress

    def record(p: object) -> None:
        show(p)
        stages.append(p.stage)  # type: ignore[attr-defined]

    panel._progress = record  # type: ignore[method-assign]
    panel.convert_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=180_000)
    assert panel.result is not None, panel.stage.text()
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "convert",
        "imatrix",
        "quantize",
        "check",
    ]
    out = panel.result.path
    assert {p.name for p in out.parent.iterdir()} == {
        out.name,
        f"{out.stem}.imatrix.gguf",
    }  # no intermediate left
    types = {t.name: t.type_name for t in read_gguf_file(out).tensors}
    assert {t for n, t in types.items() if n.endswith("attn_v.weight")} == {"Q8_0"}
    entry = Library().find(panel.result.library_id)
    assert entry.path == out and entry.provenance["source"] == str(checkpoint)  # the folder, not the F16
    assert set(panel.result.timings_s) == {"convert", "imatrix", "quantize", "check"}

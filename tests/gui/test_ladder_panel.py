"""The Quality ladder panel on SmolLM2, with the real quantizer and scorer in their child processes:
two cheap types on a short text give one point per rung on the chart, the front as a line, a filled
table and the summary; a Cancel mid-run leaves no thread and no process; the words and numbers
(progress, units, rows, the matrix's gains) come from the Qt-free view module."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.core.advice.ladder import DEFAULT_LADDER, Rung, mark_front
from app.core.units import GIB, MIB
from app.engine.quality_eval import default_text
from app.gui.context import AppContext
from app.gui.panels import ladder_view as view
from app.gui.panels.ladder import LadderPanel
from app.gui.workers import running_workers, wait_for_workers

WAIT_MS = 120_000
TYPES = ["Q2_K", "Q4_K_M"]  # quantized in seconds each; the IQ types take far longer


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path):  # type: ignore[no-untyped-def]
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = LadderPanel(ctx)
    qtbot.addWidget(widget)
    widget.resize(1000, 750)
    widget.show()
    yield widget
    widget.shutdown()
    wait_for_workers(30_000)


@pytest.fixture
def short_text(tmp_path: Path) -> Path:
    text = tmp_path / "short.txt"
    text.write_text(default_text()[:2400], encoding="utf-8")  # ~600 tokens: a few chunks of 128
    return text


def _choose(panel: LadderPanel, qtbot: QtBot, model: Path, text: Path) -> None:
    panel.open_path(str(model))  # what the library list or "Choose a GGUF file…" calls
    panel.set_types(TYPES)
    panel.set_text_file(str(text))
    panel.chunk_tokens.setValue(128)
    qtbot.waitUntil(panel.run_button.isEnabled, timeout=10_000)


LADDER_CHILDREN = ("app.engine.quantize_child", "app.engine.quality_child", "app.engine.imatrix_child")


def _children() -> list[psutil.Process]:
    """The ladder's own child processes, alive (other tests' long-lived children, such as the
    template renderer, are not the ladder's to kill)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any(
                m in " ".join(p.cmdline()) for m in LADDER_CHILDREN
            ):
                found.append(p)
        except psutil.Error:  # gone between the listing and the look
            continue
    return found


def test_a_ladder_draws_a_point_per_rung_the_front_and_the_table(
    panel: LadderPanel, qtbot: QtBot, smollm2_path: Path, short_text: Path
) -> None:
    assert set(panel.checked_types()) == set(DEFAULT_LADDER)  # the default ladder, checked
    assert not panel.run_button.isEnabled() and "Choose a model" in panel.why.text()
    assert panel.chart.currentWidget() is panel.chart.empty  # words, not empty axes
    _choose(panel, qtbot, smollm2_path, short_text)
    assert not panel.why.isVisibleTo(panel)
    seen: list[str] = []
    show = panel._progress

    def record(p: object) -> None:
        show(p)
        seen.append(panel.progress.text())

    panel._progress = record  # type: ignore[method-assign]
    with qtbot.waitSignal(panel.measured, timeout=WAIT_MS):
        panel.run_button.click()
        assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    result = panel.result
    assert result is not None and [r.name for r in result.rungs] == TYPES  # by size: Q2_K is smaller
    assert any(t.startswith("1/2 Q2_K — quantizing") for t in seen) and any(
        "2/2 Q4_K_M — scoring" in t for t in seen
    )
    assert panel.bar.value() == 1000 and panel.progress.text() == "Done."

    chart = panel.chart
    assert chart.currentWidget() is chart.plot
    n_plain = len(chart.plain.getData()[0])
    n_matrix = len(chart.calibrated.getData()[0]) if chart.calibrated.getData()[0] is not None else 0
    assert n_plain + n_matrix == len(result.rungs) == 2 and n_matrix == 0
    front = [r for r in result.rungs if r.pareto]
    assert front and len(chart.front.getData()[0]) == len(front)
    assert len(chart.labels) == 2 and "MiB" in chart.plot.getAxis("bottom").labelText

    assert panel.table.rowCount() == 2
    cells = [[panel.table.item(r, c).text() for c in range(panel.table.columnCount())] for r in range(2)]
    assert [row[0] for row in cells] == TYPES and cells[0][-1] == "yes"  # the smallest is on the front
    assert all(row[3] != "—" and float(row[3]) > 0 for row in cells)
    assert panel.gains.text() == view.NO_GAINS  # no matrix: nothing to compare
    assert "2 quantizations" in panel.summary.text() and "Advisor" in panel.summary.text()
    assert panel.run_button.isEnabled()


def test_cancel_mid_run_leaves_no_thread_or_process(
    panel: LadderPanel, qtbot: QtBot, smollm2_path: Path, short_text: Path
) -> None:
    _choose(panel, qtbot, smollm2_path, short_text)
    panel.run_button.click()
    qtbot.waitUntil(lambda: panel.bar.value() > 0 and bool(_children()), timeout=30_000)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.task is None, timeout=30_000)
    assert panel.progress.text().startswith("Stopped") and panel.result is None
    qtbot.waitUntil(lambda: not _children(), timeout=10_000)
    assert not running_workers()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_closing_mid_run_kills_the_child_and_shows_nothing_more(
    panel: LadderPanel, qtbot: QtBot, smollm2_path: Path, short_text: Path
) -> None:
    _choose(panel, qtbot, smollm2_path, short_text)
    panel.run_button.click()
    qtbot.waitUntil(lambda: bool(_children()), timeout=30_000)
    panel.shutdown()  # what the window's close does
    assert wait_for_workers(30_000)
    qtbot.waitUntil(lambda: not _children(), timeout=10_000)
    qtbot.wait(100)
    assert panel.result is None and panel.chart.currentWidget() is panel.chart.empty


def test_an_iq_only_ladder_needs_a_matrix_and_says_so(
    panel: LadderPanel, qtbot: QtBot, smollm2_path: Path
) -> None:
    panel.open_path(str(smollm2_path))
    panel.set_types(["IQ2_XS"])
    assert not panel.run_button.isEnabled() and "needs an importance matrix" in panel.why.text()
    panel.picker.choose_make()
    assert panel.run_button.isEnabled() and not panel.why.isVisibleTo(panel)
    wait_for_workers(10_000)  # the matrices offered for the model


def test_every_control_is_named(panel: LadderPanel) -> None:
    from PySide6.QtWidgets import (
        QCheckBox,
        QComboBox,
        QListWidget,
        QProgressBar,
        QPushButton,
        QSpinBox,
        QTableWidget,
    )

    kinds = (QPushButton, QComboBox, QListWidget, QTableWidget, QProgressBar, QSpinBox, QCheckBox)
    controls = [w for kind in kinds for w in panel.findChildren(kind) if not w.objectName().startswith("qt_")]
    assert len(controls) >= 10
    assert all(w.accessibleName() for w in controls), [w for w in controls if not w.accessibleName()]


# --- the view, without Qt -------------------------------------------------------------------------


def _rung(quant: str, imatrix: bool, size: int, kld: float) -> Rung:
    return Rung(quant, imatrix, size, 8 * size / 135e6, kld, 10 * kld, 1 - kld, kld, 1.0, 2.0)


def test_the_view_words_and_numbers() -> None:
    from app.engine.ladder import LadderProgress
    from app.engine.protocol import ImatrixProgress

    p = LadderProgress(3, 12, "Q3_K_S + imatrix", "score", 0.4)
    assert view.progress_text(p) == "3/12 Q3_K_S + imatrix — scoring 40 %"
    assert view.progress_text(ImatrixProgress(chunks_done=2, n_chunks=25, tok_s=51.2)).startswith(
        "Importance matrix — chunk 2 of 25"
    )
    first = view.progress_fraction(LadderProgress(1, 2, "Q2_K", "quantize", 0.0), with_matrix=False)
    mid = view.progress_fraction(LadderProgress(1, 2, "Q2_K", "score", 1.0), with_matrix=False)
    last = view.progress_fraction(LadderProgress(2, 2, "Q4_K_M", "score", 1.0), with_matrix=False)
    assert first == 0.0 and mid == pytest.approx(0.5) and last == pytest.approx(1.0)
    made = view.progress_fraction(ImatrixProgress(chunks_done=25, n_chunks=25, tok_s=50.0), with_matrix=True)
    assert made == pytest.approx(view.MATRIX_SHARE)
    assert view.progress_fraction(LadderProgress(1, 2, "Q2_K", "quantize", 0.0), with_matrix=True) == made

    assert view.size_unit([50 * MIB, 900 * MIB]) == ("MiB", MIB)
    assert view.size_unit([900 * MIB, 2 * GIB]) == ("GiB", GIB)
    rungs = mark_front([_rung("Q2_K", False, 60 * MIB, 0.5), _rung("Q2_K", True, 60 * MIB, 0.31),
                        _rung("Q4_K_M", False, 100 * MIB, 0.1), _rung("Q4_K_M", True, 100 * MIB, 0.105)])  # fmt: skip
    assert view.gains_sentence(rungs) == (
        "The importance matrix removes 38 % of Q2_K's divergence and adds 5 % to Q4_K_M's divergence."
    )
    plain, matrix, front = view.series(rungs, MIB)
    assert plain.xs == (60.0, 100.0) and matrix.names == ("Q2_K + imatrix", "Q4_K_M + imatrix")
    assert front.names == ("Q2_K + imatrix", "Q4_K_M")  # by size, only what nothing beats
    assert view.log_scale(rungs)
    rows = view.rows(rungs)
    assert rows[0] == ("Q2_K + imatrix", "60.0 MiB", "3.73", "0.3100", "3.100", "69.0 %", "yes")
    unknown = _rung("Q8_0", False, 140 * MIB, float("nan"))
    assert view.rows([unknown])[0][3] == "—" and not view.log_scale([unknown])  # unknown is not zero
    assert view.series([unknown], MIB)[0].xs == ()
    three = [_rung(q, m, 10, k) for q, m, k in (("A", False, 1.0), ("A", True, 0.5), ("B", False, 1.0),
                                                 ("B", True, 0.8), ("C", False, 1.0), ("C", True, 0.9))]  # fmt: skip
    assert view.gains_sentence(three) == (
        "The importance matrix removes 50 % of A's divergence, 20 % of B's and 10 % of C's."
    )
    assert view.gains_sentence(rungs[2:3]) == ""

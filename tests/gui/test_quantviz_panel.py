"""The quantization lab panel on the real small models: a tensor chosen by layer and name goes
through ggml's own quantizer in a child process, and the histograms, the error table, the
importance table and the linear INT8/INT4/INT2 table fill from what came back; a type that needs an
importance matrix says so; closing the panel mid-work leaves no thread and no process behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import pytest
from PySide6.QtCore import QSettings

from app.core.model.imatrix_file import Imatrix, ImatrixEntry, write_imatrix
from app.core.model.quant_lab import HISTOGRAM_BINS, LabReport
from app.engine.ggml_quant import QUANTIZABLE
from app.gui.context import AppContext
from app.gui.panels.quantviz import QuantVizPanel
from app.gui.workers import wait_for_workers

WAIT_MS = 30_000
TENSOR = "blk.0.ffn_down.weight"  # rows of 1536: whole blocks of 256 for the K- and IQ types


@pytest.fixture
def panel(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = QuantVizPanel(ctx)
    qtbot.addWidget(widget)
    widget.resize(1100, 700)
    widget.show()
    yield widget
    widget.shutdown()
    wait_for_workers(WAIT_MS)


@pytest.fixture
def model_with_imatrix(smollm2_path: Path, tmp_path: Path) -> Path:
    """SmolLM2 (a link) with an importance matrix beside it, as model publishers ship one."""
    model = tmp_path / "models" / "smollm2.gguf"
    model.parent.mkdir()
    model.symlink_to(smollm2_path)
    values = np.random.default_rng(0).lognormal(0.0, 1.5, 1536).astype(np.float32)
    entry = ImatrixEntry(values.reshape(1, -1), np.ones(1, dtype=np.int64))
    write_imatrix(model.parent / "smollm2.imatrix.gguf", Imatrix({TENSOR: entry}, ("random",), 1, 512))
    return model


def _open(qtbot, panel: QuantVizPanel, path: Path) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(panel.tensors_listed, timeout=WAIT_MS):
        panel.open_path(str(path))


def _compared(qtbot, panel: QuantVizPanel, target: str) -> LabReport:  # type: ignore[no-untyped-def]
    old = panel.comparison
    panel.type_combo.setCurrentText(target)

    def ready() -> bool:
        c = panel.comparison
        return (
            c is not None and c is not old and c.target_type == target and c.tensor == panel.selected_tensor()
        )

    qtbot.waitUntil(ready, timeout=WAIT_MS)
    assert panel.comparison is not None
    return panel.comparison


def _column(table, col: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [table.item(r, col).text() for r in range(table.rowCount())]


def test_a_k_quant_fills_the_histograms_and_every_table(
    panel: QuantVizPanel, qtbot, smollm2_path: Path
) -> None:  # type: ignore[no-untyped-def]
    _open(qtbot, panel, smollm2_path)
    assert (
        panel.layer_combo.itemText(0) == "Layer 0" and panel.layer_combo.itemText(30) == "Outside the layers"
    )
    panel.select_tensor(TENSOR)
    assert panel.selected_tensor() == TENSOR and panel.layer_combo.currentText() == "Layer 0"
    q4k = _compared(qtbot, panel, "Q4_K")
    assert q4k.source_type == "Q4_1" and q4k.bits_per_weight == 4.5 and q4k.n_sampled == 1536 * 576
    for curve in (panel.curve_before, panel.curve_after):  # the histograms hold every compared weight
        x, y = curve.getData()
        assert len(x) == len(y) + 1 == HISTOGRAM_BINS + 1 and int(np.sum(y)) == q4k.n_sampled
    rows = dict(zip(_column(panel.stats_table, 0), _column(panel.stats_table, 1), strict=True))
    assert (
        rows["Quantized to"].startswith("Q4_K, 4.5 bits")
        and rows["Largest error"] == f"{q4k.stats.max_error:.3g}"
    )
    assert panel.linear_table.rowCount() == 3 * 8  # INT8/4/2 × (2 schemes × 3 ranges + 2 per block)
    assert set(_column(panel.linear_table, 2)) == {"min-max", "percentile", "KL divergence"}
    assert "Q4_K" in panel.ggml_line.text() and "RMSE" in panel.stats.text()
    assert (
        panel.importance_table.rowCount() == 0
        and "Choose an importance matrix" in panel.importance_label.text()
    )
    q8 = _compared(qtbot, panel, "Q8_0")
    assert q8.stats.rmse < q4k.stats.rmse and q8.stats.within_share > q4k.stats.within_share


def test_an_iq_type_asks_for_an_importance_matrix_then_shows_what_it_protects(  # type: ignore[no-untyped-def]
    panel: QuantVizPanel, qtbot, model_with_imatrix: Path
) -> None:
    _open(qtbot, panel, model_with_imatrix)
    offered = [panel.imatrix_combo.itemText(i) for i in range(panel.imatrix_combo.count())]
    assert offered == ["None", "smollm2.imatrix.gguf", "Choose a file…"]  # found beside the model
    panel.select_tensor(TENSOR)
    _compared(qtbot, panel, "Q4_0")
    panel.type_combo.setCurrentText("IQ3_XXS")
    qtbot.waitUntil(lambda: "needs an importance matrix" in panel.stats.text(), timeout=WAIT_MS)
    assert "One is offered under Importance matrix" in panel.stats.text()
    assert panel.comparison is None and panel.empty.isVisible() and panel.linear_table.rowCount() == 0
    panel.imatrix_combo.setCurrentIndex(1)
    panel.imatrix_combo.activated.emit(1)  # what choosing it with the mouse or keyboard does
    report = _compared(qtbot, panel, "IQ3_XXS")
    assert report.importance is not None and report.importance.type_uses_it
    assert panel.importance_table.rowCount() == 4 and "most important 1 %" in panel.importance_label.text()
    assert "smollm2.imatrix.gguf" in panel.stats.text()


def _lab_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "app.engine.lab_child" in " ".join(p.cmdline())]


def test_closing_mid_work_leaves_no_thread_or_process_behind(  # type: ignore[no-untyped-def]
    panel: QuantVizPanel, qtbot, model_with_imatrix: Path
) -> None:
    _open(qtbot, panel, model_with_imatrix)
    panel.select_tensor(TENSOR)
    panel.imatrix_combo.setCurrentIndex(1)
    panel.type_combo.setCurrentText("IQ1_S")  # seconds of ggml building its lookup tables first
    qtbot.waitUntil(lambda: "lookup tables" in panel.stats.text(), timeout=WAIT_MS)
    assert _lab_children()
    panel.shutdown()
    assert wait_for_workers(WAIT_MS)
    qtbot.waitUntil(lambda: not _lab_children(), timeout=5_000)
    assert panel.comparison is None  # nothing delivered after the close


def test_every_type_ggml_can_quantize_is_offered(panel: QuantVizPanel) -> None:
    offered = [panel.type_combo.itemText(i) for i in range(panel.type_combo.count())]
    assert offered == list(QUANTIZABLE) and {"IQ1_S", "TQ1_0", "MXFP4", "Q2_K"} <= set(offered)
    tips = {
        panel.type_combo.itemText(i): panel.type_combo.itemData(i, 3) for i in range(panel.type_combo.count())
    }
    assert tips["Q4_0"] == "4.5 bits per weight" and tips["IQ2_XXS"].endswith("needs an importance matrix")
    for w in (
        panel.type_combo,
        panel.layer_combo,
        panel.tensor_combo,
        panel.imatrix_combo,
        panel.linear_table,
    ):
        assert w.accessibleName()


def test_empty_at_first_then_counts_from_zero_in_the_palettes_colours(  # type: ignore[no-untyped-def]
    panel: QuantVizPanel, qtbot, smollm2_path: Path
) -> None:
    from PySide6.QtGui import QPalette

    # nothing chosen: words, no axes (an empty plot's count axis ran from -400)
    assert panel.empty.isVisible() and not panel.plot.isVisible()
    assert "Choose a model" in panel.empty.text()
    _open(qtbot, panel, smollm2_path)
    names = [panel.tensor_combo.itemData(i) for i in range(panel.tensor_combo.count())]
    assert names[0].startswith("blk.0.") and all(n.startswith("blk.0.") for n in names)
    panel.select_tensor("blk.10.attn_q.weight")
    assert panel.layer_combo.currentText() == "Layer 10"
    c = _compared(qtbot, panel, "Q8_0")
    assert panel.plot.isVisible() and not panel.empty.isVisible()
    (_, _), (y_low, y_high) = panel.plot.viewRange()
    assert y_low == 0 and max(c.hist.before.max(), c.hist.after.max()) <= y_high  # every bar, none below 0
    panel.log_check.setChecked(True)
    (_, _), (y_low, y_high) = panel.plot.viewRange()
    assert y_low == 0 and np.log10(max(c.hist.before.max(), c.hist.after.max())) <= y_high
    # the plot is drawn in the window's colours, not pyqtgraph's black
    assert panel.plot.backgroundBrush().color() == panel.palette().color(QPalette.ColorRole.Base)

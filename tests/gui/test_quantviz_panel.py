"""What quantization does, on real tensors of the real small models: more bits mean less error, the
histograms are drawn from the weights compared, only types gguf's numpy code can make are offered,
and big tensors are sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from app.gui.context import AppContext
from app.gui.panels import quantviz_compute as compute
from app.gui.panels.quantviz import QuantVizPanel
from app.gui.workers import wait_for_workers

WAIT_MS = 20_000
TENSOR = "blk.0.attn_q.weight"


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


def _compared(qtbot, panel: QuantVizPanel, target: str) -> compute.QuantComparison:  # type: ignore[no-untyped-def]
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


def test_q8_0_loses_less_than_q4_0_and_both_histograms_are_drawn(  # type: ignore[no-untyped-def]
    panel: QuantVizPanel, qtbot, smollm2_path: Path
) -> None:
    with qtbot.waitSignal(panel.tensors_listed, timeout=WAIT_MS):
        panel.open_path(str(smollm2_path))
    assert panel.tensor_list.count() == len(panel.tensors) > 100
    panel.select_tensor(TENSOR)
    assert panel.selected_tensor() == TENSOR
    q4 = _compared(qtbot, panel, "Q4_0")
    q8 = _compared(qtbot, panel, "Q8_0")
    assert q8.rmse < q4.rmse and q8.mae < q4.mae
    assert q8.within_share > q4.within_share
    assert (q8.bits_per_weight, q4.bits_per_weight) == (8.5, 4.5)
    assert q8.file_type == "Q4_1" and q8.n_sampled == q8.n_total == 576 * 576
    # the histograms hold every compared weight
    for curve in (panel.curve_before, panel.curve_after):
        x, y = curve.getData()
        assert len(x) == len(y) + 1 == compute.HISTOGRAM_BINS + 1
        assert int(np.sum(y)) == q8.n_sampled
    assert "8.5 bits" in panel.stats.text() and "RMSE" in panel.stats.text()
    # the filter narrows the list and keeps the chosen tensor
    panel.filter_edit.setText("attn_q")
    assert panel.tensor_list.count() == 30  # one per layer
    assert panel.selected_tensor() == TENSOR


def test_only_types_the_numpy_code_can_quantize_are_offered(panel: QuantVizPanel) -> None:
    offered = [panel.type_combo.itemText(i) for i in range(panel.type_combo.count())]
    assert offered == list(compute.supported_types())
    assert {"Q8_0", "Q4_0"} <= set(offered)
    assert set(offered).isdisjoint(compute.unsupported_types())
    assert panel.type_combo.accessibleName() and panel.tensor_list.accessibleName()


def test_a_k_quant_file_is_compared_from_its_own_values(gemma3_path: Path) -> None:
    name = next(t.name for t in compute.list_tensors(gemma3_path) if t.type_name == "Q4_K")
    c = compute.compare(gemma3_path, name, "Q8_0")
    assert c.file_type == "Q4_K" and c.file_bits_per_weight == 4.5
    assert 0 < c.rmse < 0.05 * c.rms  # 8-bit re-quantization of 4-bit values barely moves them


def test_a_big_tensor_is_sampled_by_rows(smollm2_path: Path) -> None:
    c = compute.compare(smollm2_path, "token_embd.weight", "Q4_0")
    assert c.n_total == 576 * 49152
    assert 0 < c.n_sampled <= compute.MAX_SAMPLE_WEIGHTS and c.n_sampled % 576 == 0
    assert c.rmse > 0 and c.bits_per_weight == 4.5


def test_empty_at_first_then_counts_from_zero_in_the_palettes_colours_and_tensors_in_natural_order(  # type: ignore[no-untyped-def]
    panel: QuantVizPanel, qtbot, smollm2_path: Path
) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPalette

    from app.core.model.tensor_order import natural_key

    # nothing chosen: words, no axes (an empty plot's count axis ran from -400)
    assert panel.empty.isVisible() and not panel.plot.isVisible()
    assert "Choose a model" in panel.empty.text()

    with qtbot.waitSignal(panel.tensors_listed, timeout=WAIT_MS):
        panel.open_path(str(smollm2_path))
    names = [
        panel.tensor_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(panel.tensor_list.count())
    ]
    assert names.index("blk.2.attn_q.weight") < names.index("blk.10.attn_q.weight")
    assert names == sorted(names, key=natural_key)
    panel.select_tensor(TENSOR)
    c = _compared(qtbot, panel, "Q8_0")
    assert panel.plot.isVisible() and not panel.empty.isVisible()
    (_, _), (y_low, y_high) = panel.plot.viewRange()
    assert y_low == 0 and max(c.hist_before.max(), c.hist_after.max()) <= y_high  # every bar, none below 0
    panel.log_check.setChecked(True)
    (_, _), (y_low, y_high) = panel.plot.viewRange()
    assert y_low == 0 and np.log10(max(c.hist_before.max(), c.hist_after.max())) <= y_high
    # the plot is drawn in the window's colours, not pyqtgraph's black
    assert panel.plot.backgroundBrush().color() == panel.palette().color(QPalette.ColorRole.Base)

"""What quantization does — the quantization lab: any tensor of a model through any type ggml can
quantize, and back, with ggml's own functions (in a child process: :mod:`app.engine.lab`); the
weights before and after as overlaid histograms, the errors, what an importance matrix protects,
and the textbook linear INT8/INT4/INT2 schemes computed on the same weights.

The work runs on the thread pool; a newer choice cancels the older one (killing its child) and
stale answers are dropped. The text comes from :mod:`app.gui.panels.quantviz_compute`; pyqtgraph is
imported when the panel is built.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels import quantviz_compute as view
from app.gui.panels.convert_imatrix_picker import ImatrixPicker
from app.gui.widgets.gguf_source import GgufSource
from app.gui.workers import discard_workers, start_worker

if TYPE_CHECKING:
    from app.core.model.quant_lab import LabReport
    from app.gui.context import AppContext
    from app.gui.panels.quantviz_compute import TensorChoice

DEFAULT_TENSOR = "blk.0.attn_q.weight"  # a typical weight matrix every llama-like model has
DEFAULT_TYPE = "Q4_0"
EMPTY_TEXT = "Choose a model and one of its tensors: its weights before and after quantizing show here."
Y_HEADROOM = 1.05  # the tallest bar stays below the top edge


def _label(text: str, name: str) -> QLabel:
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    return label


def _table(columns: tuple[str, ...], name: str) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    t.setAccessibleName(name)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().hide()
    t.setWordWrap(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _fill(table: QTableWidget, rows: list[tuple[str, ...]]) -> None:
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, text in enumerate(values):
            table.setItem(r, c, QTableWidgetItem(text))


class QuantVizPanel(GgufSource, QWidget):
    updated = Signal()  # a new report is drawn (``self.comparison``)
    tensors_listed = Signal()  # the chosen file's tensors are in the choosers

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.path: str | None = None
        self.tensors: tuple[TensorChoice, ...] = ()
        self.groups: dict[str, list[TensorChoice]] = {}
        self.comparison: LabReport | None = None
        self._build()
        ctx.library_changed.connect(self.refresh_library)
        self.refresh_library()

    # --- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        source = QHBoxLayout()
        self.library_combo = QComboBox()
        self.library_combo.setAccessibleName("Model from the library")
        self.library_combo.setPlaceholderText("A model from the library…")
        self.library_combo.activated.connect(lambda _i: self._library_chosen())
        browse = QPushButton("Choose a GGUF &file…")
        browse.setAccessibleName("Choose a GGUF file")
        browse.clicked.connect(self._browse)
        self.file_label = QLabel("No model chosen.")
        self.file_label.setAccessibleName("Model file")
        self.file_label.setWordWrap(True)
        label = QLabel("&Model:")
        label.setBuddy(self.library_combo)
        for w, stretch in ((label, 0), (self.library_combo, 1), (browse, 0), (self.file_label, 2)):
            source.addWidget(w, stretch)
        lay.addLayout(source)
        lay.addLayout(self._choosers())

        split = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_lay = QVBoxLayout(top)
        top_lay.setContentsMargins(0, 0, 0, 0)
        self.plot: Any = self._make_plot()
        # Until something is compared, words instead of an empty plot (whose axes mean nothing).
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAccessibleName("No histogram yet")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.plot_stack = QStackedWidget()
        self.plot_stack.addWidget(self.empty)
        self.plot_stack.addWidget(self.plot)
        top_lay.addWidget(self.plot_stack, 1)
        self.stats = _label("Choose a model and a tensor.", "Quantization error")
        top_lay.addWidget(self.stats)
        split.addWidget(top)
        split.addWidget(self._tabs())
        split.setSizes([500, 500])  # half each; the splitter and the tables scroll give the rest
        lay.addWidget(split, 1)

    def _choosers(self) -> QGridLayout:
        from app.engine.lab import QUANTIZABLE

        grid = QGridLayout()
        self.layer_combo = QComboBox()
        self.layer_combo.setAccessibleName("Layer")
        self.layer_combo.currentTextChanged.connect(lambda _t: self._fill_tensors())
        self.tensor_combo = QComboBox()
        self.tensor_combo.setAccessibleName("Tensor of the layer")
        self.tensor_combo.currentIndexChanged.connect(lambda _i: self.recompute())
        self.type_combo = QComboBox()
        self.type_combo.setAccessibleName("Quantization type to try")
        for i, name in enumerate(QUANTIZABLE):
            self.type_combo.addItem(name)
            self.type_combo.setItemData(i, view.type_tip(name), Qt.ItemDataRole.ToolTipRole)
        self.type_combo.setCurrentText(DEFAULT_TYPE)
        self.type_combo.currentTextChanged.connect(lambda _t: self.recompute())
        self.imatrix = ImatrixPicker("the model", can_make=False)
        self.imatrix_combo = self.imatrix.combo
        self.imatrix.changed.connect(self.recompute)
        self.log_check = QCheckBox("&Logarithmic counts (shows the tails)")
        self.log_check.setAccessibleName("Logarithmic counts")
        self.log_check.toggled.connect(self._log_counts)
        for col, (text, widget) in enumerate((("&Layer:", self.layer_combo), ("&Tensor:", self.tensor_combo),
                                              ("&Quantize to:", self.type_combo),
                                              ("&Importance matrix:", self.imatrix_combo))):  # fmt: skip
            label = QLabel(text)
            label.setBuddy(widget)
            grid.addWidget(label, 0, 2 * col)
            grid.addWidget(self.imatrix if widget is self.imatrix_combo else widget, 0, 2 * col + 1)
            grid.setColumnStretch(2 * col + 1, 2 if widget is self.tensor_combo else 1)
        grid.addWidget(self.log_check, 1, 0, 1, 8)
        return grid

    def _tabs(self) -> QTabWidget:
        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("What the round trip did")
        self.stats_table = _table(("", "Value"), "Round trip through ggml")
        self.importance_label = _label(view.IMPORTANCE_EMPTY, "What the importance matrix protects")
        self.importance_table = _table(
            view.IMPORTANCE_COLUMNS, "Errors with and without the importance matrix"
        )
        intro = _label(view.LINEAR_INTRO, "How the linear schemes work")
        self.linear_table = _table(view.LINEAR_COLUMNS, "Linear INT8, INT4 and INT2 on the same weights")
        self.ggml_line = _label("", "ggml's result for comparison")
        for title, widgets in (("&Round trip", (self.stats_table,)),
                               ("Im&portance", (self.importance_label, self.importance_table)),
                               ("Linear &INT8/4/2", (intro, self.linear_table, self.ggml_line))):  # fmt: skip
            page = QWidget()
            page_lay = QVBoxLayout(page)
            for w in widgets:
                page_lay.addWidget(w, 1 if isinstance(w, QTableWidget) else 0)
            self.tabs.addTab(page, title)
        return self.tabs

    def _log_counts(self, on: bool) -> None:
        self.plot.setLogMode(y=on)
        self._fit_view()

    def _make_plot(self) -> Any:
        import pyqtgraph as pg

        plot = pg.PlotWidget()
        plot.setAccessibleName("Histogram of the weights before and after quantizing")
        plot.viewport().setAccessibleName(plot.accessibleName())  # focusable too (pyqtgraph)
        plot.setLabel("bottom", "weight value")
        plot.setLabel("left", "weights")
        plot.addLegend(offset=(-10, 10))
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.setMenuEnabled(False)
        self.curve_before = plot.plot(
            [0, 1], [0], stepMode="center", fillLevel=0, name="before (as in the file)"
        )
        self.curve_after = plot.plot([0, 1], [0], stepMode="center", fillLevel=0, name="after quantizing")
        self._restyle(plot)
        return plot

    def _restyle(self, plot: Any, palette: Any = None) -> None:
        """The palette's colours (light or dark) for the plot and both histograms."""
        import pyqtgraph as pg

        from app.gui.theme import style_plot

        c = style_plot(plot, palette)
        for curve, colour in ((self.curve_before, c.before), (self.curve_after, c.after)):
            curve.setPen(pg.mkPen(colour, width=1.5))
            curve.setBrush(c.fill(colour))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "plot"):  # light ↔ dark
            self._restyle(self.plot, self.palette())
        super().changeEvent(event)

    def _fit_view(self) -> None:
        """The histograms' own range: counts from 0 up (never below, as autorange's padding
        around a fill down to 0 would), weights from the first bin's edge to the last's."""
        c = self.comparison
        if c is None:
            return
        h = c.hist
        tallest = max(int(h.before.max(initial=0)), int(h.after.max(initial=0)), 1)
        self.plot.setXRange(float(h.bin_edges[0]), float(h.bin_edges[-1]), padding=0.02)
        if self.log_check.isChecked():  # log10 of the counts: a single weight is 0
            self.plot.setYRange(0, math.log10(tallest) * Y_HEADROOM or 1.0, padding=0)
        else:
            self.plot.setYRange(0, tallest * Y_HEADROOM, padding=0)

    # --- the model and its tensors --------------------------------------------------------------

    def open_path(self, path: str) -> None:
        """List the tensors of the GGUF at ``path`` (its header only) and the importance matrices
        beside it, off the GUI thread."""
        self.file_label.setText(f"Reading {path}…")

        def done(found: tuple[tuple[TensorChoice, ...], list[Path]]) -> None:
            self.path, self.tensors = path, found[0]
            self.groups = view.by_layer(self.tensors)
            self.file_label.setText(path)
            self.imatrix.folder = str(Path(path).parent)
            self.imatrix.offer(found[1])  # this model's matrices, not the last one's
            self._fill_layers()
            self.tensors_listed.emit()

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self.file_label.setText(f"{msg} {hint}".strip())

        start_worker(lambda r, c: (view.list_tensors(path), view.imatrix_candidates(path)), owner=self,
                     latest="tensors", on_return=done, on_error=failed)  # fmt: skip

    def _fill_layers(self) -> None:
        keep = self.selected_tensor()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(list(self.groups))
        self.layer_combo.blockSignals(False)
        names = [t.name for t in self.tensors]
        pick = keep if keep in names else (DEFAULT_TENSOR if DEFAULT_TENSOR in names else None)
        if pick is None and names:
            pick = next((t.name for t in self.tensors if len(t.shape) > 1), names[0])
        if pick is not None:
            self.select_tensor(pick)

    def _fill_tensors(self, select: str | None = None) -> None:
        self.tensor_combo.blockSignals(True)
        self.tensor_combo.clear()
        for t in self.groups.get(self.layer_combo.currentText(), []):
            self.tensor_combo.addItem(t.label, t.name)
        if select is not None:
            self.tensor_combo.setCurrentIndex(max(0, self.tensor_combo.findData(select)))
        self.tensor_combo.blockSignals(False)
        self.recompute()

    def select_tensor(self, name: str) -> None:
        """Show tensor ``name`` (its layer, then the tensor) and start its round trip."""
        self.layer_combo.blockSignals(True)
        self.layer_combo.setCurrentText(view.group_name(name))
        self.layer_combo.blockSignals(False)
        self._fill_tensors(select=name)

    def selected_tensor(self) -> str | None:
        name = self.tensor_combo.currentData()
        return str(name) if name else None

    def add_imatrix(self, path: str, *, select: bool = True) -> None:
        """Offer the importance-matrix file ``path`` (and choose it, which recomputes)."""
        self.imatrix.add_file(path, select=select)

    def imatrix_path(self) -> str | None:
        chosen = self.imatrix.choice().path
        return str(chosen) if chosen else None

    # --- the round trip ---------------------------------------------------------------------------

    def recompute(self) -> None:
        from app.engine.lab import quantize_tensor

        name, target, path = self.selected_tensor(), self.type_combo.currentText(), self.path
        if not (name and target and path):
            return
        imatrix = self.imatrix_path()
        self.stats.setText(f"Quantizing {name} to {target} with ggml…")

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            if cancelled:
                return
            self.comparison = None
            offered = self.imatrix.has_files() and imatrix is None and "importance matrix" in msg
            more = " One is offered under Importance matrix." if offered else ""
            self.stats.setText(f"{msg} {hint}{more}".strip())
            self.plot_stack.setCurrentWidget(self.empty)  # the words again, not the last one's plot
            for table in (self.stats_table, self.importance_table, self.linear_table):
                table.setRowCount(0)

        start_worker(lambda r, c: quantize_tensor(path, name, target, imatrix_path=imatrix, on_progress=r, cancel=c),
                     owner=self, latest="compare", on_yield=lambda stage: self.stats.setText(str(stage)),
                     on_return=self._draw, on_error=failed)  # fmt: skip

    def _draw(self, r: LabReport) -> None:
        self.comparison = r
        self.curve_before.setData(r.hist.bin_edges, r.hist.before, stepMode="center", fillLevel=0)
        self.curve_after.setData(r.hist.bin_edges, r.hist.after, stepMode="center", fillLevel=0)
        self.plot_stack.setCurrentWidget(self.plot)
        self._fit_view()
        self.stats.setText(view.summary(r))
        _fill(self.stats_table, list(view.stats_rows(r)))
        self.importance_label.setText(view.importance_text(r))
        _fill(self.importance_table, list(view.importance_rows(r)))
        _fill(self.linear_table, view.linear_rows(r))
        self.ggml_line.setText(view.ggml_line(r))
        self.plot.setAccessibleDescription(
            f"Before and after {r.target_type}: RMSE {r.stats.rmse:.3g}, {100 * r.stats.within_share:.0f} % within 5 %"
        )
        self.updated.emit()

    def shutdown(self) -> None:
        """Cancel running work (its child is killed) and drop whatever it still delivers."""
        discard_workers(self)

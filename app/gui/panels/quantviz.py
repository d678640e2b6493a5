"""What quantization does: one tensor's weights before and after a round trip through a smaller
type, as overlaid histograms and a few error numbers.

The numpy work (:mod:`app.gui.panels.quantviz_compute`) runs on the thread pool; a newer choice
cancels the older one and stale answers are dropped. pyqtgraph is imported when the panel is built.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.workers import discard_workers, start_worker

if TYPE_CHECKING:
    from app.gui.context import AppContext
    from app.gui.panels.quantviz_compute import QuantComparison, TensorChoice

DEFAULT_TENSOR = "blk.0.attn_q.weight"  # a typical weight matrix every llama-like model has
EMPTY_TEXT = "Choose a model and one of its tensors: its weights before and after quantizing show here."
Y_HEADROOM = 1.05  # the tallest bar stays below the top edge


class QuantVizPanel(QWidget):
    updated = Signal()  # a new comparison is drawn (``self.comparison``)
    tensors_listed = Signal()  # the chosen file's tensors are in the list

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.path: str | None = None
        self.tensors: tuple[TensorChoice, ...] = ()
        self.comparison: QuantComparison | None = None
        self._build()
        ctx.library_changed.connect(self.refresh_library)
        self.refresh_library()

    # --- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        from app.gui.panels.quantviz_compute import supported_types, unsupported_types

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

        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter tensors, e.g. attn_q or blk.3.")
        self.filter_edit.setAccessibleName("Filter the tensor list")
        self.filter_edit.textChanged.connect(self._fill_tensors)
        self.tensor_list = QListWidget()
        self.tensor_list.setAccessibleName("Tensors of the model")
        self.tensor_list.currentItemChanged.connect(lambda *_: self.recompute())
        left_lay.addWidget(self.filter_edit)
        left_lay.addWidget(self.tensor_list, 1)
        split.addWidget(left)

        right = QWidget()
        right_lay = QVBoxLayout(right)
        right_lay.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.type_combo = QComboBox()
        self.type_combo.setAccessibleName("Quantization type to try")
        self.type_combo.addItems(list(supported_types()))
        self.type_combo.setCurrentText("Q4_0")
        self.type_combo.currentTextChanged.connect(lambda _t: self.recompute())
        form.addRow("&Quantize to:", self.type_combo)
        self.log_check = QCheckBox("&Logarithmic counts (shows the tails)")
        self.log_check.setAccessibleName("Logarithmic counts")
        self.log_check.toggled.connect(self._log_counts)
        form.addRow("", self.log_check)
        right_lay.addLayout(form)
        missing = unsupported_types()
        if missing:
            note = QLabel(f"{', '.join(missing)} are not offered: the gguf package's numpy code cannot "
                          "quantize them yet (llama.cpp's C code can).")  # fmt: skip
            note.setWordWrap(True)
            right_lay.addWidget(note)
        self.plot: Any = self._make_plot()
        # Until something is compared, words instead of an empty plot (whose axes mean nothing).
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setAccessibleName("No histogram yet")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.plot_stack = QStackedWidget()
        self.plot_stack.addWidget(self.empty)
        self.plot_stack.addWidget(self.plot)
        right_lay.addWidget(self.plot_stack, 1)
        self.stats = QLabel("Choose a model and a tensor.")
        self.stats.setAccessibleName("Quantization error")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        right_lay.addWidget(self.stats)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        lay.addWidget(split, 1)

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
        tallest = max(int(c.hist_before.max(initial=0)), int(c.hist_after.max(initial=0)), 1)
        self.plot.setXRange(float(c.bin_edges[0]), float(c.bin_edges[-1]), padding=0.02)
        if self.log_check.isChecked():  # log10 of the counts: a single weight is 0
            self.plot.setYRange(0, math.log10(tallest) * Y_HEADROOM or 1.0, padding=0)
        else:
            self.plot.setYRange(0, tallest * Y_HEADROOM, padding=0)

    # --- the model ----------------------------------------------------------------------------

    def refresh_library(self) -> None:
        from app.gui.widgets.library_combo import refresh_library_combo

        refresh_library_combo(self, self.ctx.library, self.library_combo)

    def _library_chosen(self) -> None:
        path = self.library_combo.currentData()
        if path:
            self.open_path(str(path))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        """List the tensors of the GGUF at ``path`` (its header only) off the GUI thread."""
        from app.gui.panels.quantviz_compute import list_tensors

        self.file_label.setText(f"Reading {path}…")

        def done(tensors: tuple[TensorChoice, ...]) -> None:
            self.path, self.tensors = path, tensors
            self.file_label.setText(path)
            self._fill_tensors()
            self.tensors_listed.emit()

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self.file_label.setText(f"{msg} {hint}".strip())

        start_worker(lambda r, c: list_tensors(path), owner=self, latest="tensors", on_return=done,
                     on_error=failed)  # fmt: skip

    def _fill_tensors(self) -> None:
        wanted = self.filter_edit.text().strip().lower()
        current = self.selected_tensor()
        self.tensor_list.blockSignals(True)
        self.tensor_list.clear()
        for t in self.tensors:
            if wanted and wanted not in t.name.lower():
                continue
            shape = " × ".join(str(d) for d in reversed(t.shape))  # rows × row length, as people write it
            item = QListWidgetItem(f"{t.name}   {shape}   {t.type_name}")
            item.setData(Qt.ItemDataRole.UserRole, t.name)
            self.tensor_list.addItem(item)
        names = [
            self.tensor_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.tensor_list.count())
        ]
        pick = current if current in names else (DEFAULT_TENSOR if DEFAULT_TENSOR in names else None)
        if pick is None and names:
            pick = next((t.name for t in self.tensors if t.name in names and len(t.shape) > 1), names[0])
        self.tensor_list.blockSignals(False)
        if pick is not None:
            self.select_tensor(pick)

    def select_tensor(self, name: str) -> None:
        for i in range(self.tensor_list.count()):
            if self.tensor_list.item(i).data(Qt.ItemDataRole.UserRole) == name:
                self.tensor_list.setCurrentRow(i)  # starts the comparison
                return

    def selected_tensor(self) -> str | None:
        item = self.tensor_list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    # --- the comparison -----------------------------------------------------------------------

    def recompute(self) -> None:
        from app.gui.panels.quantviz_compute import compare

        name, target, path = self.selected_tensor(), self.type_combo.currentText(), self.path
        if not (name and target and path):
            return
        self.stats.setText(f"Quantizing {name} to {target}…")

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self.comparison = None
            self.stats.setText(f"{msg} {hint}".strip())
            if not cancelled:  # no histogram to show: the words again, not the last one's plot
                self.plot_stack.setCurrentWidget(self.empty)

        start_worker(lambda r, c: compare(path, name, target, cancel=c), owner=self, latest="compare",
                     on_return=self._draw, on_error=failed)  # fmt: skip

    def _draw(self, c: QuantComparison) -> None:
        self.comparison = c
        self.curve_before.setData(c.bin_edges, c.hist_before, stepMode="center", fillLevel=0)
        self.curve_after.setData(c.bin_edges, c.hist_after, stepMode="center", fillLevel=0)
        self.plot_stack.setCurrentWidget(self.plot)
        self._fit_view()
        sample = (f"all {c.n_total:,} weights" if c.n_sampled == c.n_total
                  else f"{c.n_sampled:,} of {c.n_total:,} weights (evenly spaced rows)")  # fmt: skip
        rel = 100 * c.rmse / c.rms if c.rms else 0.0
        text = (
            f"<b>{c.tensor}</b>: {c.file_type} in the file ({c.file_bits_per_weight:g} bits per weight) → "
            f"{c.target_type} ({c.bits_per_weight:g} bits, {c.bits_per_weight / 8:.3g} bytes per weight); {sample}.<br>"
            f"Mean absolute error {c.mae:.3g}, RMSE {c.rmse:.3g} ({rel:.1f} % of the weights' RMS {c.rms:.3g}); "
            f"{100 * c.within_share:.1f} % of weights stay within 5 % of their value "
            "(weights under a tenth of the RMS are judged against that tenth)."
        )  # fmt: skip
        if c.file_type == c.target_type:
            text += "<br>This is the file's own type: the round trip reproduces the file."
        elif c.file_type not in ("F32", "F16", "BF16"):
            text += f"<br>“Before” is the file's {c.file_type} values, so this shows re-quantizing them."
        self.stats.setText(text)
        self.plot.setAccessibleDescription(
            f"Before and after {c.target_type}: RMSE {c.rmse:.3g}, {100 * c.within_share:.0f} % within 5 %"
        )
        self.updated.emit()

    def shutdown(self) -> None:
        """Cancel running work and drop whatever it still delivers (the widgets may be gone)."""
        discard_workers(self)

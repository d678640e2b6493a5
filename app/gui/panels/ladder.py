"""Quality ladder: one model quantized to several types — plain, and with an importance matrix —
each scored against the model itself (mean KL divergence of the next-token distributions, as
``tailorlm ladder``), drawn as size against loss with the size/quality front, listed in a table,
and remembered for the Advisor (:mod:`app.engine.ladder`).

The work — the matrix first when "make one now" is chosen, then quantize and score rung by rung,
each in a child process — runs through the app's one worker; Cancel, closing the panel or the
window kill the child and deliver nothing more. The words and numbers come from the Qt-free
:mod:`app.gui.panels.ladder_view`; the chart is :mod:`app.gui.panels.ladder_chart`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels import ladder_view as view
from app.gui.panels.convert_imatrix_picker import ImatrixPicker
from app.gui.widgets.gguf_source import GgufSource
from app.gui.workers import Worker, discard_workers, start_worker

if TYPE_CHECKING:
    from app.engine.ladder import LadderResult
    from app.gui.context import AppContext

BUILTIN_TEXT = "The built-in text (~3,600 tokens)"  # app.engine.quality_eval.default_text
CHOOSE_TEXT = "Choose a text file…"
DEFAULT_CHUNK_TOKENS = 512  # llama-perplexity's -c default, and quality_ladder's
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 16, 8192  # app.engine.quality_child.MIN_TOKENS; a laptop's worth
TYPES_HEIGHT_PX = 118  # five rows of types; the list scrolls for the rest
TYPE_CELL_EXTRA_PX = 36  # a check box, its gap and a margin beside a type's name


def _label(text: str, name: str) -> QLabel:
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    return label


class LadderPanel(GgufSource, QWidget):
    measured = Signal()  # a ladder was measured and drawn (``self.result``)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.path: str | None = None  # the model measured
        self.task: Worker | None = None
        self.result: LadderResult | None = None
        self._with_matrix = False  # the running job makes its matrix first
        self._build()
        ctx.library_changed.connect(self.refresh_library)
        self.refresh_library()
        self._update_buttons()

    # --- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        grid = QGridLayout()
        self.library_combo = QComboBox()
        self.library_combo.setAccessibleName("Model from the library")
        self.library_combo.setPlaceholderText("A model from the library…")
        self.library_combo.activated.connect(lambda _i: self._library_chosen())
        browse = QPushButton("Choose a GGUF &file…")
        browse.setAccessibleName("Choose a GGUF file")
        browse.clicked.connect(self._browse)
        self.file_label = _label("No model chosen: an F16, BF16 or Q8_0 file measures best.", "Model file")
        model_row = QHBoxLayout()
        model_row.addWidget(self.library_combo, 1)
        model_row.addWidget(browse)
        self._row(grid, 0, "&Model:", self.library_combo, model_row)
        grid.addWidget(self.file_label, 1, 1)
        self.types = self._types_list()
        self._row(grid, 2, "&Types to measure:", self.types)
        self.picker = ImatrixPicker("the model")
        self.picker.changed.connect(self._update_buttons)
        self._row(grid, 3, "&Importance matrix:", self.picker.combo, self.picker)
        text_row = QHBoxLayout()
        self.text_combo = QComboBox()
        self.text_combo.setAccessibleName("Text to score on")
        self.text_combo.addItem(BUILTIN_TEXT, None)
        self.text_combo.addItem(CHOOSE_TEXT, CHOOSE_TEXT)
        self.text_combo.activated.connect(self._text_activated)
        self.chunk_tokens = QSpinBox()
        self.chunk_tokens.setRange(MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS)
        self.chunk_tokens.setValue(DEFAULT_CHUNK_TOKENS)
        self.chunk_tokens.setSuffix(" tokens")
        self.chunk_tokens.setAccessibleName("Tokens per scored chunk")
        self.chunk_tokens.setToolTip("llama-perplexity -c: the second half of each chunk is scored")
        chunk_label = QLabel("in chun&ks of")
        chunk_label.setBuddy(self.chunk_tokens)
        text_row.addWidget(self.text_combo, 1)
        text_row.addWidget(chunk_label)
        text_row.addWidget(self.chunk_tokens)
        self._row(grid, 4, "&Score on:", self.text_combo, text_row)
        grid.setColumnStretch(1, 1)
        lay.addLayout(grid)

        run_row = QHBoxLayout()
        self.run_button = QPushButton("&Run")
        self.run_button.setAccessibleName("Measure the quality ladder")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cance&l")
        self.cancel_button.setAccessibleName("Cancel the measurement")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName("Ladder progress")
        for w, stretch in ((self.run_button, 0), (self.cancel_button, 0), (self.bar, 1)):
            run_row.addWidget(w, stretch)
        lay.addLayout(run_row)
        self.progress = _label("", "Ladder stage")
        lay.addWidget(self.progress)
        self.why = _label("", "Why Run is not available")
        lay.addWidget(self.why)

        split = QSplitter(Qt.Orientation.Vertical)
        from app.gui.panels.ladder_chart import LadderChart

        self.chart = LadderChart()
        split.addWidget(self.chart)
        below = QWidget()
        below_lay = QVBoxLayout(below)
        below_lay.setContentsMargins(0, 0, 0, 0)
        self.gains = _label("", "What the importance matrix gains")
        self.table = QTableWidget(0, len(view.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(view.COLUMNS))
        self.table.setAccessibleName("Quantizations measured")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.summary = _label("", "What was measured")
        for w, stretch in ((self.gains, 0), (self.table, 1), (self.summary, 0)):
            below_lay.addWidget(w, stretch)
        split.addWidget(below)
        split.setSizes([500, 400])
        lay.addWidget(split, 1)

    @staticmethod
    def _row(grid: QGridLayout, row: int, text: str, buddy: QWidget, content: Any = None) -> None:
        label = QLabel(text)
        label.setBuddy(buddy)
        grid.addWidget(label, row, 0)
        target = content if content is not None else buddy
        if isinstance(target, QWidget):
            grid.addWidget(target, row, 1)
        else:
            grid.addLayout(target, row, 1)

    def _types_list(self) -> QListWidget:
        from app.core.advice.ladder import DEFAULT_LADDER
        from app.engine.quantize import NEEDS_IMATRIX, QUANT_TYPES

        types = QListWidget()
        types.setAccessibleName("Types to measure")
        types.setFlow(QListView.Flow.LeftToRight)
        types.setWrapping(True)
        types.setResizeMode(QListView.ResizeMode.Adjust)
        # one cell per type, as wide as the longest name and its check box: nothing is cut short
        cell = types.fontMetrics()
        types.setGridSize(QSize(cell.horizontalAdvance("MXFP4_MOE") + TYPE_CELL_EXTRA_PX, cell.height() + 8))
        types.setMaximumHeight(TYPES_HEIGHT_PX)
        for name in QUANT_TYPES:
            if name == "F32":  # nothing is rounded: it would measure only the source's own loss
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in DEFAULT_LADDER else Qt.CheckState.Unchecked)
            if name in NEEDS_IMATRIX:
                item.setToolTip(f"{name} needs an importance matrix: measured only with one")
            types.addItem(item)
        types.itemChanged.connect(lambda _item: self._update_buttons())
        return types

    # --- choices ------------------------------------------------------------------------------

    def open_path(self, path: str) -> None:
        """Measure the GGUF at ``path``; the matrices beside it (or made for it before) are offered."""
        from app.gui.panels.convert_imatrix import candidates, ladder_matrix_path

        if self.task is not None:
            return
        self.path = path
        self.file_label.setText(path)
        self.picker.folder = str(Path(path).parent)
        start_worker(lambda r, c: candidates(Path(path), ladder_matrix_path(Path(path))), owner=self,
                     latest="matrices", on_return=self.picker.offer)  # fmt: skip
        self._update_buttons()

    def checked_types(self) -> list[str]:
        items = (self.types.item(i) for i in range(self.types.count()))
        return [it.text() for it in items if it.checkState() == Qt.CheckState.Checked]

    def set_types(self, names: list[str]) -> None:
        """Check exactly ``names``."""
        for i in range(self.types.count()):
            item = self.types.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in names else Qt.CheckState.Unchecked)

    def set_text_file(self, path: str) -> None:
        """Score on the UTF-8 text at ``path`` (and offer it from now on)."""
        at = self.text_combo.findData(path)
        if at < 0:
            at = self.text_combo.count() - 1  # before "Choose a text file…"
            self.text_combo.insertItem(at, Path(path).name, path)
            self.text_combo.setItemData(at, path, Qt.ItemDataRole.ToolTipRole)
        self.text_combo.setCurrentIndex(at)

    def _text_activated(self, index: int) -> None:
        if self.text_combo.itemData(index) != CHOOSE_TEXT:
            return
        self.text_combo.setCurrentIndex(0)
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a text to score on", "", "Text (*.txt *.md);;All files (*)"
        )
        if path:
            self.set_text_file(path)

    def _blocked(self) -> str:
        """Why Run cannot start, in words; "" when it can."""
        from app.engine.ladder import plan_rungs

        if self.path is None:
            return "Choose a model to measure."
        types = self.checked_types()
        if not types:
            return "Check at least one type to measure."
        steps, _ = plan_rungs(types, Path() if self.picker.choice().chosen else None)
        if not steps:
            return "Every type checked needs an importance matrix: choose one, or make one now."
        return ""

    def _update_buttons(self) -> None:
        busy = self.task is not None
        why = "" if busy else self._blocked()
        self.run_button.setEnabled(not busy and not why)
        self.run_button.setToolTip(why)
        self.cancel_button.setEnabled(busy)
        self.why.setText(why)
        self.why.setVisible(bool(why))
        for w in (self.library_combo, self.types, self.picker, self.text_combo, self.chunk_tokens):
            w.setEnabled(not busy)

    # --- the work -----------------------------------------------------------------------------

    def run(self) -> None:
        if self.task is not None or self._blocked() or self.path is None:
            return
        source, types, matrix = Path(self.path), self.checked_types(), self.picker.choice()
        text_path, n_ctx = self.text_combo.currentData(), self.chunk_tokens.value()
        self._with_matrix = matrix.kind == "make"
        self.bar.setValue(0)
        self.progress.setText("Starting…")

        def work(report: Any, cancel: Any) -> Any:
            text = view.read_text(Path(text_path)) if text_path else None
            return view.run_ladder(
                source, types, matrix, text=text, n_ctx=n_ctx, on_progress=report, cancel=cancel
            )

        self.task = start_worker(work, owner=self, on_yield=self._progress, on_return=self._measured,
                                 on_error=self._not_measured, name="ladder")  # fmt: skip
        self._update_buttons()

    def _progress(self, p: Any) -> None:
        self.bar.setValue(round(1000 * view.progress_fraction(p, with_matrix=self._with_matrix)))
        self.progress.setText(view.progress_text(p))

    def _measured(self, result: LadderResult) -> None:
        self.task, self.result = None, result
        self.bar.setValue(1000)
        self.progress.setText("Done.")
        self.chart.show_rungs(result.rungs)
        rows = view.rows(result.rungs)
        self.table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, text in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.gains.setText(view.gains_sentence(result.rungs) or view.NO_GAINS)
        self.summary.setText(view.summary(result))
        self._update_buttons()
        if self._with_matrix:  # the matrix made now is offered for the next run
            self.open_path(str(result.source))
        self.measured.emit()

    def _not_measured(self, message: str, hint: str, cancelled: bool) -> None:
        self.task = None
        self.bar.setValue(0)
        self.progress.setText(
            "Stopped; nothing more was measured." if cancelled else f"Failed: {message} {hint}".strip()
        )
        if not cancelled:
            self.ctx.error.emit(message, hint)
        self._update_buttons()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.progress.setText("Stopping…")

    def shutdown(self) -> None:
        """Cancel running work (its child is killed) and drop whatever it still delivers."""
        discard_workers(self)

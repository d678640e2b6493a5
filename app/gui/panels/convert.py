"""Convert: a Hugging Face checkpoint folder or a GGUF → a GGUF at the precision the user picks,
checked and registered — ``app.engine.build.build_gguf`` (through
:mod:`app.gui.panels.convert_run`) shown with a progress bar, and what it made in a result box
(:mod:`app.gui.panels.convert_result`). An importance matrix (a file, or one made now from the
built-in text) and tensors kept at higher precision come from :mod:`app.gui.panels.convert_options`.

The source is checked (config, tokenizer, safetensors headers; or the GGUF's header) and the output
size predicted on the thread pool as soon as it is chosen, so a wrong folder, a type that needs a
matrix or a full disk is known before anything runs. llama.cpp's converter lives in an environment
of its own (about 1.2 GB, created once); until it exists the panel offers to set it up and shows
pip's output while it does. A GGUF needs no converter.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import TailorError
from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.panels import convert_plan as plan
from app.gui.panels.convert_options import ConvertOptions
from app.gui.panels.convert_progress import OverallProgress
from app.gui.panels.convert_result import ResultBox
from app.gui.panels.convert_setup import ConverterSetup
from app.gui.workers import Worker, discard_workers, start_worker

DEFAULT_TYPE = "Q4_K_M"


def _selectable(label: QLabel, name: str) -> QLabel:
    label.setWordWrap(True)
    label.setAccessibleName(name)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    return label


class ConvertPanel(QWidget):
    """Pick a source and a precision, see what will come out, convert, chat with the result."""

    # the path of the converted model, to size up in the Advisor; the window hands it over
    advise_requested = Signal(str)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.source: plan.Source | None = None  # the folder or GGUF shown, once checked
        self.prediction_result: plan.Prediction | None = None  # for the source, type and options shown
        self.keep_error = ""  # a bad PATTERN=TYPE item, in words
        self.out_exists = False
        self.task: Worker | None = None  # the conversion running now
        self.result: Any = None  # the BuildResult of the latest conversion, shown in the result box
        self.overall: OverallProgress | None = None  # the running conversion's one bar
        self.setup = ConverterSetup(ctx, _selectable(QLabel("Checking whether the converter is set up…"),
                                                     "Converter status"), on_change=self._update_buttons)  # fmt: skip
        body = QWidget()
        outer = QVBoxLayout(body)
        outer.addWidget(self.setup)
        outer.addLayout(self._source_form())
        self.options = ConvertOptions()
        self.options.changed.connect(self._predict)
        outer.addWidget(self.options)
        outer.addLayout(self._run_row())
        self.stage = _selectable(QLabel(""), "Conversion stage")
        outer.addWidget(self.stage)
        why = QHBoxLayout()
        self.why = _selectable(QLabel(""), "Why Convert is not available")
        self.make_button = QPushButton("&Make one now")
        self.make_button.setAccessibleName("Make an importance matrix now from the built-in text")
        self.make_button.clicked.connect(self.options.picker.choose_make)
        why.addWidget(self.why, 1)
        why.addWidget(self.make_button, 0, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(why)
        self.result_box = ResultBox(_selectable(QLabel(""), "Conversion result"))
        self.result_label = self.result_box.label
        self.advise_button, self.chat_button = self.result_box.advise_button, self.result_box.chat_button
        self.advise_button.clicked.connect(self.advise)
        self.chat_button.clicked.connect(self.chat)
        outer.addWidget(self.result_box)
        outer.addStretch(1)
        scroll = QScrollArea()  # a laptop's short screen scrolls the form rather than cutting it
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        scroll.setAccessibleName("Conversion settings")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(scroll)
        ctx.library_changed.connect(self.refresh_library)
        self.refresh_library()
        self._update_buttons()
        self.setup.check()

    def _source_form(self) -> QFormLayout:
        from app.engine.quantize import NEEDS_IMATRIX, QUANT_TYPES

        form = QFormLayout()
        row = QHBoxLayout()
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("A Hugging Face checkpoint folder (config.json, tokenizer, *.safetensors) "
                                       "or a .gguf file")  # fmt: skip
        self.folder.setAccessibleName("Checkpoint folder or GGUF file")
        self.folder.editingFinished.connect(lambda: self.set_input(self.folder.text()))
        browse = QPushButton("&Browse…")
        browse.setAccessibleName("Choose the checkpoint folder")
        browse.clicked.connect(self._browse)
        gguf = QPushButton("G&GUF…")
        gguf.setAccessibleName("Choose a GGUF file to quantize")
        gguf.clicked.connect(self._browse_gguf)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        row.addWidget(gguf)
        folder_label = QLabel("&Source:")
        folder_label.setBuddy(self.folder)
        form.addRow(folder_label, row)
        self.library_combo = QComboBox()
        self.library_combo.setAccessibleName("Model from the library")
        self.library_combo.setPlaceholderText("A model from the library…")
        self.library_combo.activated.connect(lambda _i: self._library_chosen())
        library_label = QLabel("Or from the librar&y:")
        library_label.setBuddy(self.library_combo)
        form.addRow(library_label, self.library_combo)
        self.target = QComboBox()
        for i, name in enumerate(QUANT_TYPES):
            self.target.addItem(name)
            if name in NEEDS_IMATRIX:
                self.target.setItemData(i, "needs an importance matrix", Qt.ItemDataRole.ToolTipRole)
        self.target.setCurrentText(DEFAULT_TYPE)
        self.target.setAccessibleName("Target precision")
        self.target.currentTextChanged.connect(lambda _: self._predict())
        target_label = QLabel("&Target precision:")
        target_label.setBuddy(self.target)
        form.addRow(target_label, self.target)
        self.facts = _selectable(QLabel("Choose a checkpoint folder or a GGUF."), "Source facts")
        form.addRow("Model:", self.facts)
        self.prediction = _selectable(QLabel("—"), "Predicted output")
        form.addRow("Output:", self.prediction)
        return form

    def _run_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.convert_button = QPushButton("&Convert")
        self.convert_button.setAccessibleName("Convert to the target precision")
        self.convert_button.clicked.connect(self.convert)
        self.cancel_button = QPushButton("Cance&l")
        self.cancel_button.setAccessibleName("Cancel the conversion")
        self.cancel_button.clicked.connect(self.cancel)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setAccessibleName("Conversion progress")
        for w in (self.convert_button, self.cancel_button):
            row.addWidget(w)
        row.addWidget(self.bar, 1)
        return row

    @property
    def ready(self) -> bool | None:
        """llama.cpp's converter is set up; None until known."""
        return self.setup.ready

    # --- the source -----------------------------------------------------------------------------

    def refresh_library(self) -> None:
        from app.gui.widgets.library_combo import refresh_library_combo

        refresh_library_combo(self, self.ctx.library, self.library_combo)

    def _library_chosen(self) -> None:
        path = self.library_combo.currentData()
        if path and self.task is None:
            self.set_input(str(path))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a Hugging Face checkpoint folder")
        if folder:
            self.set_input(folder)

    def _browse_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.set_input(path)

    def set_source(self, folder: str, quant: str) -> None:
        """The Advisor's "Convert to …" (through the window): this folder, at this precision."""
        if self.task is None:  # not while a conversion runs: the fields are locked
            self.target.setCurrentText(quant)
            self.set_input(folder)

    def set_input(self, path: str) -> None:
        """Check the folder or GGUF and predict the output, off the GUI thread; a newer choice wins
        (the check and the prediction after it are one "source" worker)."""
        from app.gui.panels.convert_imatrix import candidates, ladder_matrix_path

        if self.folder.text() != path:
            self.folder.setText(path)
        self.source, self.prediction_result = None, None
        where = Path(path.strip()).expanduser()
        self.facts.setText(f"Checking {where}…" if path.strip() else "Choose a checkpoint folder or a GGUF.")
        self.prediction.setText("—")
        self._update_buttons()
        if not path.strip():
            return

        def done(found: tuple[plan.Source, list[Path]]) -> None:
            self.source = found[0]
            self.facts.setText(escape(self.source.facts()))
            self.options.set_model(plan.presets_present(self.source.model))
            self.options.picker.folder = str(where.parent if where.is_file() else where)
            self.options.picker.offer(found[1])
            self._predict()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.facts.setText(f"<span style='color:#b3261e'>{escape(message)}</span> {escape(hint)}")

        def work(report: Any, cancel: Any) -> tuple[plan.Source, list[Path]]:
            source = plan.inspect_source(where)
            offered = candidates(source.path, ladder_matrix_path(source.path)) if source.is_gguf else []
            return source, offered

        start_worker(work, owner=self, latest="source", on_return=done, on_error=failed)

    def _predict(self) -> None:
        source, to = self.source, self.target.currentText()
        self.prediction_result = None
        if source is None:
            self._update_buttons()
            return
        self.options.set_not_applicable(plan.options_apply(source, to))
        choice = self.options.choice()
        try:
            keep, self.keep_error = self.options.keep(), ""
        except TailorError as exc:  # a bad PATTERN=TYPE item: shown as the reason
            keep, self.keep_error = (), f"{exc} {exc.hint or ''}".strip()
        self.prediction.setText("Working it out…")
        self._update_buttons()

        def done(p: plan.Prediction) -> None:
            self.prediction_result, self.out_exists = p, p.exists
            if p.exists and self.result is not None and self.result.path == p.out:
                exists = " — made just now: see the result below."  # not a warning about our own file
            elif p.exists:
                exists = " — <b>this file already exists</b>: remove it or pick another precision."
            else:
                exists = ""
            about = f"about {format_bytes(p.size_bytes)} at {to}, roughly {p.seconds:.0f} s on 2 cores"
            self.prediction.setText(f"{about}<br>{escape(str(p.out))}{exists}")
            self._update_buttons()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.prediction.setText(escape(f"{message} {hint}".strip()))

        start_worker(lambda r, c: plan.predict(source, to, choice, keep), owner=self, latest="source",
                     on_return=done, on_error=failed)  # fmt: skip

    # --- converting -----------------------------------------------------------------------------

    def _blocked(self) -> str:
        """Why Convert cannot run, in words, where the rest of the panel does not already say it."""
        p, source = self.prediction_result, self.source
        if source is None or self.task is not None:
            return ""
        if not source.is_gguf and self.ready is False:
            return "Set up llama.cpp's converter first (above): a checkpoint folder needs it."
        if self.keep_error:
            return self.keep_error
        return plan.needs_matrix_reason(self.target.currentText(), p.needs_matrix) if p is not None else ""

    def _update_buttons(self) -> None:
        busy = self.task is not None
        setting_up = self.setup.task is not None
        p, source = self.prediction_result, self.source
        why = self._blocked()
        can = (source is not None and (source.is_gguf or bool(self.ready)) and p is not None and not busy
               and not setting_up and not self.out_exists and not why)  # fmt: skip
        self.convert_button.setEnabled(can)
        self.why.setText(why)
        self.why.setVisible(bool(why))
        self.make_button.setVisible(bool(p is not None and p.needs_matrix and not self.keep_error))
        self.cancel_button.setEnabled(busy)
        for w in (self.folder, self.target, self.library_combo, self.options):
            w.setEnabled(not busy)

    def convert(self) -> None:
        from app.gui.panels.convert_run import ConvertRequest, run_convert

        source, p = self.source, self.prediction_result
        if source is None or p is None or self.task is not None:
            return
        to, choice = self.target.currentText(), self.options.choice()
        request = ConvertRequest(
            source.path, to, p.out, choice, self.options.keep(), plan.intermediate_type(source)
        )
        self.result_box.hide()
        self.result = None
        self.overall = OverallProgress(plan.source_stage_seconds(source, to, choice))
        self.bar.setValue(0)
        self.stage.setText("Starting…")
        self.task = start_worker(
            lambda report, cancel: run_convert(request, on_progress=report, cancel=cancel),
            owner=self,
            on_yield=self._progress,
            on_return=self._converted,
            on_error=self._not_converted,
        )
        self._update_buttons()

    def _progress(self, p: Any) -> None:
        """A ``BuildProgress`` (its stage's own fraction) → one bar for the whole conversion."""
        overall = self.overall or OverallProgress({p.stage: 1.0})
        self.bar.setValue(round(1000 * overall.update(p.stage, p.fraction)))
        detail = p.detail if p.stage != "check" else ""  # the check's detail is the words it wrote
        self.stage.setText(overall.text(p.stage, p.fraction, detail))

    def _converted(self, converted: Any) -> None:
        result = converted.result
        self.task, self.result, self.overall = None, result, None
        self.bar.setValue(1000)
        self.stage.setText("Done.")
        self.result_box.show_result(result, converted)
        self.out_exists = True
        self.prediction.setText(f"{escape(str(result.path))} — made just now: see the result below.")
        self._update_buttons()
        self.ctx.library_changed.emit()

    def _not_converted(self, message: str, hint: str, cancelled: bool) -> None:
        self.task, self.overall = None, None
        self.bar.setValue(0)
        self.stage.setText(
            "Cancelled; nothing was kept." if cancelled else f"Failed: {message} {hint}".strip()
        )
        if not cancelled:
            self.ctx.error.emit(message, hint)
        self._update_buttons()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.stage.setText("Stopping…")

    def advise(self) -> None:
        if self.result is not None:
            self.advise_requested.emit(str(self.result.path))

    def chat(self) -> None:
        if self.result is not None:
            self.ctx.open_chat.emit(str(self.result.path), {})
            self.ctx.show_panel.emit("chat")

    def shutdown(self) -> None:
        """The window closes: stop the conversion or set-up (nothing half-made is kept) and the rest."""
        discard_workers(self)

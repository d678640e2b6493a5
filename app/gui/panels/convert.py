"""Convert: a Hugging Face checkpoint folder → a GGUF at the precision the user picks, checked and
registered — ``app.engine.build.build_gguf`` shown with a progress bar, and what it made in a
result box (:mod:`app.gui.panels.convert_result`).

The checkpoint is checked (config, tokenizer, safetensors headers) and the output size predicted
on the thread pool as soon as a folder is chosen, so a wrong folder or a full disk is known before
anything runs. llama.cpp's converter lives in an environment of its own (about 1.2 GB, created
once); until it exists the panel offers to set it up and shows pip's output while it does.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.panels.convert_progress import OverallProgress
from app.gui.panels.convert_result import ResultBox
from app.gui.workers import Worker, discard_workers, start_worker

DEFAULT_TYPE = "Q4_K_M"
# A rough time model from tests/bench/convert_speed.py (README: SmolLM2-135M as a 538 MB F32
# checkpoint on 2 cores): the converter spends ~4 s starting torch, then ~115 MB/s of source
# (8.7 s in all); quantizing F16 runs ~70 MB/s of F16 input (270.9 MB → Q4_K_M in 3.8 s); the
# check loads the result and writes 6 tokens (our measurement: 3.6 s for SmolLM2 Q8_0, 2 busy cores).
CONVERTER_START_S = 4.0
CONVERT_SOURCE_BYTES_S = 115e6
QUANTIZE_F16_BYTES_S = 70e6
CHECK_S = 3.0


def stage_seconds(source_bytes: int, f16_bytes: int, *, direct: bool) -> dict[str, float]:
    """Each stage's seconds for build_gguf on a 2-core laptop-class CPU; direct: the converter
    writes the type, so there is no quantize stage. They weigh the stages on the progress bar."""
    return {
        "convert": CONVERTER_START_S + source_bytes / CONVERT_SOURCE_BYTES_S,
        "quantize": 0.0 if direct else f16_bytes / QUANTIZE_F16_BYTES_S,
        "check": CHECK_S,
    }


def rough_seconds(source_bytes: int, f16_bytes: int, *, direct: bool) -> float:
    """Seconds for the whole of build_gguf (see :func:`stage_seconds`)."""
    return sum(stage_seconds(source_bytes, f16_bytes, direct=direct).values())


def _selectable(label: QLabel, name: str) -> QLabel:
    from PySide6.QtCore import Qt

    label.setWordWrap(True)
    label.setAccessibleName(name)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    return label


class ConvertPanel(QWidget):
    """Pick a checkpoint and a precision, see what will come out, convert, chat with the result."""

    # the path of the converted model, to size up in the Advisor; the window hands it over
    advise_requested = Signal(str)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        from app.engine.quantize import QUANT_TYPES

        self.ctx = ctx
        self.ready: bool | None = None  # the converter's environment exists; None: not known yet
        self.checkpoint: Any = None  # app.core.build.convert.Checkpoint of the folder shown
        self.out_exists = False
        self.task: Worker | None = None  # the conversion or the set-up running now
        self.setting_up = False
        self.result: Any = None  # the BuildResult of the latest conversion, shown in the result box
        self.overall: OverallProgress | None = None  # the running conversion's one bar
        outer = QVBoxLayout(self)

        self.setup_box = QGroupBox("llama.cpp's converter")
        setup = QVBoxLayout(self.setup_box)
        self.setup_label = _selectable(
            QLabel("Checking whether the converter is set up…"), "Converter status"
        )
        self.setup_button = QPushButton("Set &up the converter (downloads about 1.2 GB once)")
        self.setup_button.setAccessibleName("Set up the converter, downloading about 1.2 GB once")
        self.setup_button.clicked.connect(self.setup_converter)
        self.setup_button.hide()
        self.setup_log = QPlainTextEdit()
        self.setup_log.setReadOnly(True)
        self.setup_log.setMaximumBlockCount(500)
        self.setup_log.setMaximumHeight(140)
        self.setup_log.setAccessibleName("Converter set-up log")
        self.setup_log.hide()
        for w in (self.setup_label, self.setup_button, self.setup_log):
            setup.addWidget(w)
        outer.addWidget(self.setup_box)

        form = QFormLayout()
        row = QHBoxLayout()
        self.folder = QLineEdit()
        self.folder.setPlaceholderText(
            "A Hugging Face checkpoint folder (config.json, tokenizer, *.safetensors)"
        )
        self.folder.setAccessibleName("Checkpoint folder")
        self.folder.editingFinished.connect(lambda: self.set_folder(self.folder.text()))
        browse = QPushButton("&Browse…")
        browse.setAccessibleName("Choose the checkpoint folder")
        browse.clicked.connect(self._browse)
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        folder_label = QLabel("Checkpoint &folder:")
        folder_label.setBuddy(self.folder)
        form.addRow(folder_label, row)
        self.target = QComboBox()
        self.target.addItems(list(QUANT_TYPES))
        self.target.setCurrentText(DEFAULT_TYPE)
        self.target.setAccessibleName("Target precision")
        self.target.currentTextChanged.connect(lambda _: self._predict())
        target_label = QLabel("&Target precision:")
        target_label.setBuddy(self.target)
        form.addRow(target_label, self.target)
        self.facts = _selectable(QLabel("Choose a checkpoint folder."), "Checkpoint facts")
        form.addRow("Checkpoint:", self.facts)
        self.prediction = _selectable(QLabel("—"), "Predicted output")
        form.addRow("Output:", self.prediction)
        outer.addLayout(form)

        row = QHBoxLayout()
        self.convert_button = QPushButton("&Convert")
        self.convert_button.setAccessibleName("Convert the checkpoint")
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
        outer.addLayout(row)
        self.stage = _selectable(QLabel(""), "Conversion stage")
        outer.addWidget(self.stage)

        self.result_box = ResultBox(_selectable(QLabel(""), "Conversion result"))
        self.result_label = self.result_box.label
        self.advise_button, self.chat_button = self.result_box.advise_button, self.result_box.chat_button
        self.advise_button.clicked.connect(self.advise)
        self.chat_button.clicked.connect(self.chat)
        outer.addWidget(self.result_box)
        outer.addStretch(1)
        self._update_buttons()
        self._check_converter()

    # --- the converter's environment ------------------------------------------------------------

    def _check_converter(self) -> None:
        from app.core.build.convert import converter_ready

        def done(ready: bool) -> None:
            self.ready = ready
            self.setup_box.setVisible(not ready)
            self.setup_button.setVisible(not ready)
            self.setup_label.setText(
                ""
                if ready
                else "llama.cpp's converter runs in a Python environment of its "
                "own (torch and the converter), downloaded from PyPI once."
            )
            self._update_buttons()

        start_worker(lambda r, c: converter_ready(), owner=self, latest="converter", on_return=done,
                     on_error=self._failed)  # fmt: skip

    def setup_converter(self) -> None:
        from app.core.build.convert import setup_converter

        if self.task is not None:
            if self.setting_up:
                self.task.cancel()  # the button reads "Cancel the set-up" meanwhile
            return
        self.setup_log.clear()
        self.setup_log.show()
        self.setting_up = True
        self.setup_button.setText("Cancel the set-&up")

        def finish(_: Any = None) -> None:
            self.task, self.setting_up = None, False
            self.setup_button.setText("Set &up the converter (downloads about 1.2 GB once)")
            self._update_buttons()
            self._check_converter()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.setup_log.appendPlainText(f"{message} {hint}".strip())
            if not cancelled:
                self.ctx.error.emit(message, hint)
            finish()

        self.task = start_worker(
            lambda report, cancel: setup_converter(on_line=report, cancel=cancel),
            owner=self,
            on_yield=self.setup_log.appendPlainText,
            on_return=finish,
            on_error=failed,
        )
        self._update_buttons()

    # --- the checkpoint -------------------------------------------------------------------------

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a Hugging Face checkpoint folder")
        if folder:
            self.folder.setText(folder)
            self.set_folder(folder)

    def set_source(self, folder: str, quant: str) -> None:
        """The Advisor's "Convert to …" (through the window): this folder, at this precision."""
        if self.task is None:  # not while a conversion runs: the fields are locked
            self.target.setCurrentText(quant)
            self.set_folder(folder)

    def set_folder(self, folder: str) -> None:
        """Check the folder and predict the output, off the GUI thread; a newer choice wins (the
        check and the prediction after it are one "checkpoint" worker)."""
        from app.core.build.convert import check_checkpoint, converter_ready, supported_architectures

        if self.folder.text() != folder:
            self.folder.setText(folder)
        self.checkpoint = None
        path = Path(folder.strip()).expanduser()
        self.facts.setText(f"Checking {path}…" if folder.strip() else "Choose a checkpoint folder.")
        self.prediction.setText("—")
        self._update_buttons()
        if not folder.strip():
            return

        def work(report: Any, cancel: Any) -> Any:
            known = (supported_architectures() or None) if converter_ready() else None
            return check_checkpoint(path, known=known)

        def done(ckpt: Any) -> None:
            self.checkpoint = ckpt
            m = ckpt.model
            params = f"{m.n_params / 1e9:.2f} B parameters" if m.n_params else "parameters unknown"
            self.facts.setText(
                f"{ckpt.architecture}, {params}, {m.file_type or '?'} weights, "
                f"{format_bytes(ckpt.source_bytes)} of safetensors"
            )
            self._predict()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.facts.setText(f"<span style='color:#b3261e'>{escape(message)}</span> {escape(hint)}")

        start_worker(work, owner=self, latest="checkpoint", on_return=done, on_error=failed)

    def _predict(self) -> None:
        from app.core.build.convert import OUTTYPES, predicted_bytes
        from app.engine.build import default_output

        if self.checkpoint is None:
            return
        ckpt, to = self.checkpoint, self.target.currentText()
        self.prediction.setText("Working it out…")

        def work(report: Any, cancel: Any) -> Any:
            out = default_output(ckpt.folder, to)
            seconds = rough_seconds(
                ckpt.source_bytes, predicted_bytes(ckpt.model, "F16"), direct=to in OUTTYPES
            )
            return predicted_bytes(ckpt.model, to), seconds, out, out.exists()

        def done(result: Any) -> None:
            size, seconds, out, self.out_exists = result
            if self.out_exists and self.result is not None and self.result.path == out:
                exists = " — made just now: see the result below."  # not a warning about our own file
            elif self.out_exists:
                exists = " — <b>this file already exists</b>: remove it or pick another precision."
            else:
                exists = ""
            about = f"about {format_bytes(size)} at {to}, roughly {seconds:.0f} s on 2 cores"
            self.prediction.setText(f"{about}<br>{escape(str(out))}{exists}")
            self._update_buttons()

        def failed(message: str, hint: str, cancelled: bool) -> None:
            self.prediction.setText(escape(f"{message} {hint}".strip()))

        start_worker(work, owner=self, latest="checkpoint", on_return=done, on_error=failed)

    # --- converting -----------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        busy = self.task is not None
        self.convert_button.setEnabled(
            bool(self.ready) and self.checkpoint is not None and not busy and not self.out_exists
        )
        self.cancel_button.setEnabled(busy and not self.setting_up)
        self.folder.setEnabled(not busy)
        self.target.setEnabled(not busy)

    def convert(self) -> None:
        from app.engine.build import build_gguf

        if self.checkpoint is None or self.task is not None:
            return
        from app.core.build.convert import OUTTYPES, predicted_bytes

        ckpt, to = self.checkpoint, self.target.currentText()
        folder = ckpt.folder
        self.result_box.hide()
        self.result = None
        self.overall = OverallProgress(stage_seconds(
            ckpt.source_bytes, predicted_bytes(ckpt.model, "F16"), direct=to in OUTTYPES))  # fmt: skip
        self.bar.setValue(0)
        self.stage.setText("Starting…")
        self.task = start_worker(
            lambda report, cancel: build_gguf(folder, to, on_progress=report, cancel=cancel),
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

    def _converted(self, result: Any) -> None:
        self.task, self.result, self.overall = None, result, None
        self.bar.setValue(1000)
        self.stage.setText("Done.")
        self.result_box.show_result(result)
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

    def _failed(self, message: str, hint: str, cancelled: bool) -> None:
        if not cancelled:
            self.ctx.error.emit(message, hint)

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

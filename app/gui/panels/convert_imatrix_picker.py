"""The importance-matrix picker of the Convert, Quality ladder and lab panels: a combo box — None,
"Make one now from the built-in text" (not in the lab), the files offered or chosen, "Choose a
file…" — and, while "make" is chosen, how many chunks of how many tokens to measure
(llama-imatrix's ``--chunks`` and ``-c``).
What it holds is a :class:`~app.gui.panels.convert_imatrix.MatrixChoice`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QSpinBox, QWidget

from app.engine.imatrix import MIN_CTX
from app.gui.panels.convert_imatrix import DEFAULT_CHUNK_TOKENS, MatrixChoice

NONE, MAKE, CHOOSE = "none", "make", "choose"  # the fixed items' data; a file's is its path
MAKE_TEXT = "Make one now from the built-in text"
MAX_CHUNKS = 10_000
MAX_CHUNK_TOKENS = 8192


class ImatrixPicker(QWidget):
    """``combo`` is the control to label (a form's buddy); ``changed`` follows every new choice."""

    changed = Signal()  # the choice (kind, file, chunks or chunk size) changed

    def __init__(self, what: str = "the model", *, can_make: bool = True) -> None:
        super().__init__()
        self.folder = ""  # where "Choose a file…" opens
        self.combo = QComboBox()
        self.combo.setAccessibleName("Importance matrix")
        self.combo.addItem("None", NONE)
        if can_make:
            self.combo.addItem(MAKE_TEXT, MAKE)
            self.combo.setItemData(1, f"Measure {what} on TailorLM's calibration text first (minutes)",
                                   Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self._first_file = self.combo.count()  # the files sit between the fixed items
        self.combo.addItem("Choose a file…", CHOOSE)
        self.combo.activated.connect(self._activated)
        self.chunks = QSpinBox()
        self.chunks.setRange(0, MAX_CHUNKS)
        self.chunks.setSpecialValueText("all")
        self.chunks.setAccessibleName("Chunks of the calibration text to measure (0: all)")
        self.chunks.setToolTip("llama-imatrix --chunks: fewer is faster and rougher")
        self.chunk_tokens = QSpinBox()
        self.chunk_tokens.setRange(MIN_CTX, MAX_CHUNK_TOKENS)
        self.chunk_tokens.setSingleStep(64)
        self.chunk_tokens.setValue(DEFAULT_CHUNK_TOKENS)
        self.chunk_tokens.setSuffix(" tokens")
        self.chunk_tokens.setAccessibleName("Tokens per calibration chunk")
        self.chunk_tokens.setToolTip("llama-imatrix -c: 512, as llama.cpp measures")
        self.chunks_label = QLabel("Chu&nks:")
        self.chunks_label.setBuddy(self.chunks)
        self.of_label = QLabel("of")  # no mnemonic: the panels use F for a file
        self.of_label.setBuddy(self.chunk_tokens)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        for w in (self.chunks_label, self.chunks, self.of_label, self.chunk_tokens):
            row.addWidget(w)
        for spin in (self.chunks, self.chunk_tokens):
            spin.valueChanged.connect(lambda _v: self.changed.emit())
        self._show_make_options()

    def choice(self) -> MatrixChoice:
        data = self.combo.currentData()
        if data == MAKE:
            return MatrixChoice("make", None, self.chunks.value(), self.chunk_tokens.value())
        if data in (NONE, CHOOSE, None):
            return MatrixChoice()
        return MatrixChoice("file", Path(str(data)))

    def choose_make(self) -> None:
        """Select "make one now" (the offer beside a type that needs a matrix)."""
        self.combo.setCurrentIndex(self.combo.findData(MAKE))
        self._show_make_options()
        self.changed.emit()

    def choose_none(self) -> None:
        self.combo.setCurrentIndex(0)
        self._show_make_options()
        self.changed.emit()

    def add_file(self, path: str, *, select: bool = True) -> None:
        """Offer the matrix at ``path`` (and choose it)."""
        at = self.combo.findData(path)
        if at < 0:
            at = self.combo.count() - 1  # before "Choose a file…"
            self.combo.insertItem(at, Path(path).name, path)
            self.combo.setItemData(at, path, Qt.ItemDataRole.ToolTipRole)
        if select:
            self.combo.setCurrentIndex(at)
            self._show_make_options()
            self.changed.emit()

    def offer(self, paths: Iterable[Path]) -> None:
        """Replace the files offered with ``paths`` (a new model's), keeping a chosen one if listed."""
        chosen = self.combo.currentData()
        for i in reversed(range(self._first_file, self.combo.count() - 1)):
            self.combo.removeItem(i)
        for p in paths:
            self.add_file(str(p), select=False)
        at = self.combo.findData(chosen)
        self.combo.setCurrentIndex(at if at >= 0 else 0)
        self._show_make_options()
        if self.combo.currentData() != chosen:
            self.changed.emit()

    def has_files(self) -> bool:
        return self.combo.count() > self._first_file + 1

    def _activated(self, index: int) -> None:
        if self.combo.itemData(index) == CHOOSE:
            self.combo.setCurrentIndex(0)
            path, _ = QFileDialog.getOpenFileName(self, "Choose an importance matrix", self.folder,
                                                  "Importance matrices (*.gguf *.dat *.imatrix);;All files (*)")  # fmt: skip
            if path:
                self.add_file(path)
                return
        self._show_make_options()
        self.changed.emit()

    def _show_make_options(self) -> None:
        making = self.combo.currentData() == MAKE
        for w in (self.chunks_label, self.chunks, self.of_label, self.chunk_tokens):
            w.setVisible(making)

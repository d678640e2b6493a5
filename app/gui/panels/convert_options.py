"""The Convert panel's "Calibration and mixed precision" box: the importance matrix (none, a file, or
one made now) and the tensors to keep at higher precision — the usual recipe's three as
checkboxes (output layer, token embeddings, attention values → Q8_0), anything else as
``PATTERN=TYPE`` items, as llama-quantize's ``--tensor-type`` takes them."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QWidget

from app.gui.panels.convert_imatrix import MatrixChoice
from app.gui.panels.convert_imatrix_picker import ImatrixPicker
from app.gui.panels.convert_plan import KEEP_PRESETS, KEEP_TYPE, keep_pairs


class ConvertOptions(QGroupBox):
    """``choice()`` and ``keep()`` are what the next conversion uses; ``changed`` follows both."""

    changed = Signal()  # the matrix or the tensors kept changed

    def __init__(self) -> None:
        super().__init__("Calibration and mixed precision")
        self.present: dict[str, bool] = {}  # which presets match a tensor of the model
        form = QFormLayout(self)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setAccessibleName("Why these options are off")
        self.note.hide()
        form.addRow(self.note)
        self.picker = ImatrixPicker("the model")
        self.picker.changed.connect(self.changed)
        label = QLabel("&Importance matrix:")
        label.setBuddy(self.picker.combo)
        form.addRow(label, self.picker)

        row = QHBoxLayout()
        self.presets: dict[str, QCheckBox] = {}
        for p in KEEP_PRESETS:
            box = QCheckBox(p.label)
            box.setAccessibleName(f"Keep the {p.label} at {KEEP_TYPE}")
            box.setToolTip(f"llama-quantize --tensor-type '{p.pattern}={KEEP_TYPE}'")
            box.toggled.connect(lambda _on: self.changed.emit())
            self.presets[p.key] = box
            row.addWidget(box)
        row.addStretch(1)
        holder = QWidget()
        holder.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        form.addRow(f"Keep at {KEEP_TYPE}:", holder)
        self.extra = QLineEdit()
        self.extra.setAccessibleName("More tensors to keep, as PATTERN=TYPE items")
        self.extra.setPlaceholderText(
            r"e.g. ffn_down=Q6_K blk\.0\.=Q8_0 (a pattern searched in tensor names)"
        )
        self.extra.editingFinished.connect(self.changed)
        extra_label = QLabel("Mo&re (PATTERN=TYPE):")
        extra_label.setBuddy(self.extra)
        form.addRow(extra_label, self.extra)

    def choice(self) -> MatrixChoice:
        return self.picker.choice() if not self.note.text() else MatrixChoice()

    def keep(self) -> tuple[tuple[str, str], ...]:
        """The (pattern, type) pairs; raises ``ConversionError`` for a bad free-text item."""
        if self.note.text():
            return ()
        ticked = [k for k, box in self.presets.items() if box.isChecked() and self.present.get(k, True)]
        return keep_pairs(ticked, self.extra.text())

    def set_model(self, present: dict[str, bool]) -> None:
        """``present``: which presets match a tensor of the model; one that matches none (tied
        embeddings: no output layer) is off, and says why."""
        self.present = present
        self._enable()

    def set_not_applicable(self, why: str) -> None:
        """``why``: the reason the options mean nothing now (they are greyed); "" when they apply."""
        self.note.setText(why)
        self.note.setVisible(bool(why))
        self._enable()

    def _enable(self) -> None:
        on = not self.note.text()
        self.picker.setEnabled(on)
        self.extra.setEnabled(on)
        for key, box in self.presets.items():
            there = self.present.get(key, True)
            box.setEnabled(on and there)
            tip = box.toolTip().split("\n")[0]
            box.setToolTip(tip if there else f"{tip}\nThis model has no such tensor.")

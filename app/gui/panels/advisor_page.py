"""The Advisor's plans page, laid out to fit a laptop screen: the model's heading, the dials
(context, GPU layers, precision), the plan table, the memory bar, the selected plan in words, the
reasons and the action. It is one scrolling page — on a short screen or a half-screen window the
words below the table scroll instead of squeezing the table or widening the window. The benchmark
row comes last. Layout only: the panel (:mod:`app.gui.panels.advisor`) connects and fills it.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.gui.panels.advisor_action import ActionBar
from app.gui.panels.advisor_bench import BenchBar
from app.gui.panels.advisor_table import PlanTable
from app.gui.widgets.membar import MemoryBar
from app.gui.widgets.wrapping import breakable

if TYPE_CHECKING:
    from app.core.model.info import ModelInfo

PLAN_ROWS_SHOWN = 6  # the plan table is never shorter than this many rows; the page scrolls instead
DIAL_VALUE_MIN_PX = 170  # the dials' value labels: steady while a slider moves; longer texts wrap
SOURCE_WORDS = {"gguf": "file", "hf_gguf": "on the Hub", "hf_dir": "checkpoint folder", "hf_repo": "Hub repo",
                "catalog": "catalog"}  # fmt: skip


def heading_html(model: ModelInfo) -> str:
    """The model's human name (not the GGUF's raw ``general.name``), its shape and where it is from;
    a long file name may wrap at its separators instead of widening the window."""
    from app.core.advice.naming import display_name

    where = SOURCE_WORDS.get(model.source_kind, model.source_kind)
    local = model.source_kind in ("gguf", "hf_dir")
    source = model.source.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] if local else model.source
    trained = (
        f"trained on {model.n_ctx_train:,}-token contexts" if model.n_ctx_train else "trained context unknown"
    )
    return (f"<b>{escape(display_name(model))}</b> — {escape(model.architecture)}, {model.n_params / 1e9:.2f} B "
            f"parameters, {model.n_layer} layers, {trained} ({where}: {escape(breakable(source))})")  # fmt: skip


def _slider(name: str) -> QSlider:
    s = QSlider(Qt.Orientation.Horizontal)
    s.setAccessibleName(name)
    s.setPageStep(1)
    s.setTickPosition(QSlider.TickPosition.TicksBelow)
    return s


def _words(name: str) -> QLabel:
    label = QLabel("")
    label.setAccessibleName(name)
    label.setWordWrap(True)
    return label


class AdvicePage(QScrollArea):
    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Plans for the model")
        page = QWidget()
        self.setWidget(page)
        lay = QVBoxLayout(page)
        lay.setContentsMargins(0, 0, 0, 0)
        self.heading = _words("Model")
        lay.addWidget(self.heading)
        lay.addLayout(self._dials())
        self.table = PlanTable()
        rows_h = self.table.verticalHeader().defaultSectionSize() * PLAN_ROWS_SHOWN
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + rows_h + 4)
        lay.addWidget(self.table, 1)
        self.memory_bar = MemoryBar()
        lay.addWidget(self.memory_bar)
        self.detail = _words("Selected plan")
        lay.addWidget(self.detail)
        self.reasons = _words("Why this recommendation")
        self.reasons.setTextFormat(Qt.TextFormat.RichText)
        self.reasons.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        lay.addWidget(self.reasons)
        self.action_bar = ActionBar()
        lay.addWidget(self.action_bar)
        self.bench_bar = BenchBar()
        lay.addWidget(self.bench_bar)

    def _dials(self) -> QGridLayout:
        dials = QGridLayout()
        self.ctx_slider = _slider("Context length")
        self.ctx_label = QLabel("")
        self.ngl_spin = QSpinBox()
        self.ngl_spin.setRange(-1, 1)
        self.ngl_spin.setSpecialValueText("auto")
        self.ngl_spin.setAccessibleName("Layers on the GPU; auto lets the advisor choose")
        self.ngl_spin.setMaximumWidth(120)
        self.precision_slider = _slider("Precision")
        self.precision_label = QLabel("")
        for row, (text, widget, value) in enumerate((
            ("&Context:", self.ctx_slider, self.ctx_label),
            ("GPU &layers:", self.ngl_spin, None),
            ("&Precision:", self.precision_slider, self.precision_label),
        )):  # fmt: skip
            label = QLabel(text)
            label.setBuddy(widget)
            dials.addWidget(label, row, 0)
            dials.addWidget(widget, row, 1)
            if value is not None:
                value.setMinimumWidth(DIAL_VALUE_MIN_PX)
                value.setWordWrap(True)
                dials.addWidget(value, row, 2)
        dials.setColumnStretch(1, 1)
        return dials

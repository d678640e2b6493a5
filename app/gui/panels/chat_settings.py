"""The chat side panel: system prompt and sampling settings, kept between sessions.

``ChatSettings`` is the typed value (Qt-free); it is saved as one JSON object under
``chat/settings`` in the app's settings, so a new field never needs a migration — unknown keys are
dropped and missing ones take the defaults of :class:`app.engine.protocol.Sampling`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from PySide6.QtCore import QSettings, Signal, Slot
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.engine.protocol import Sampling

SETTINGS_KEY = "chat/settings"
EDITABLE = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed", "max_tokens")


@dataclass(frozen=True)
class ChatSettings:
    """What the user chose for the next answers."""

    system_prompt: str = ""
    sampling: Sampling = field(default_factory=Sampling)

    def to_json(self) -> str:
        data = {k: getattr(self.sampling, k) for k in EDITABLE}
        return json.dumps({"system_prompt": self.system_prompt, **data})

    @classmethod
    def from_json(cls, text: str | None) -> ChatSettings:
        try:
            data = json.loads(text) if text else {}
        except (TypeError, ValueError):
            data = {}  # a hand-edited, broken value: start from the defaults
        if not isinstance(data, dict):
            data = {}
        defaults = asdict(Sampling())
        values: dict[str, Any] = {}
        for f in fields(Sampling):
            if f.name in EDITABLE and f.name in data:
                with contextlib.suppress(TypeError, ValueError):  # a bad value keeps the default
                    values[f.name] = type(defaults[f.name])(data[f.name])
        return cls(str(data.get("system_prompt", "")), replace(Sampling(), **values))

    @classmethod
    def load(cls, settings: QSettings) -> ChatSettings:
        value = settings.value(SETTINGS_KEY)
        return cls.from_json(value if isinstance(value, str) else None)

    def save(self, settings: QSettings) -> None:
        settings.setValue(SETTINGS_KEY, self.to_json())


def _double(lo: float, hi: float, step: float, decimals: int, name: str, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setAccessibleName(name)
    box.setToolTip(tip)
    return box


def _int(lo: int, hi: int, name: str, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setAccessibleName(name)
    box.setToolTip(tip)
    return box


class ChatSettingsPanel(QWidget):
    """System prompt and sampling; every change is saved at once."""

    # the new ChatSettings after any edit
    changed = Signal(object)

    def __init__(self, settings: QSettings) -> None:
        super().__init__()
        self._settings = settings
        self.setAccessibleName("Chat settings")
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>System prompt</b>"))
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("How the model should behave (used when a chat starts)")
        self.system_prompt.setTabChangesFocus(True)  # keep Tab for moving on, not for indenting
        self.system_prompt.setMaximumHeight(120)
        lay.addWidget(self.system_prompt)
        form = QFormLayout()
        # Ranges follow llama.cpp's samplers (common/arg.cpp): 0 disables top-k, min-p and top-p = 1.
        self.temperature = _double(0.0, 2.0, 0.05, 2, "Temperature", "0 always picks the likeliest token")
        self.top_k = _int(0, 1000, "Top-k", "Keep the k likeliest tokens; 0 keeps all")
        self.top_p = _double(0.0, 1.0, 0.01, 2, "Top-p", "Keep the likeliest tokens up to this probability")
        self.min_p = _double(
            0.0, 1.0, 0.01, 2, "Min-p", "Drop tokens less likely than this share of the best"
        )
        self.repeat_penalty = _double(0.5, 2.0, 0.05, 2, "Repeat penalty", "Above 1 discourages repeats")
        self.seed = _int(-1, 2**31 - 1, "Seed", "The same seed and settings repeat an answer")
        self.seed.setSpecialValueText("Random")
        self.max_tokens = _int(1, 32768, "Maximum answer tokens", "The longest answer, in tokens")
        self._boxes: dict[str, QSpinBox | QDoubleSpinBox] = {
            "temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty, "seed": self.seed, "max_tokens": self.max_tokens,
        }  # fmt: skip
        for box in self._boxes.values():
            label = QLabel(box.accessibleName() + ":")
            label.setBuddy(box)
            form.addRow(label, box)
            box.valueChanged.connect(self._save)
        lay.addLayout(form)
        reset = QPushButton("Reset to defaults")
        reset.setAccessibleName("Reset the sampling settings to their defaults")
        reset.clicked.connect(self.reset)
        lay.addWidget(reset)
        lay.addStretch(1)
        self.set_value(ChatSettings.load(settings))
        self.system_prompt.textChanged.connect(self._save)

    def value(self) -> ChatSettings:
        values: dict[str, Any] = {k: box.value() for k, box in self._boxes.items()}  # ints from QSpinBox
        return ChatSettings(self.system_prompt.toPlainText(), replace(Sampling(), **values))

    def set_value(self, value: ChatSettings) -> None:
        """Show ``value`` (and save it)."""
        for key, box in self._boxes.items():
            box.blockSignals(True)
            box.setValue(getattr(value.sampling, key))
            box.blockSignals(False)
        if self.system_prompt.toPlainText() != value.system_prompt:
            self.system_prompt.setPlainText(value.system_prompt)
        self._save()

    @Slot()
    def reset(self) -> None:
        self.set_value(ChatSettings(self.system_prompt.toPlainText()))

    @Slot()
    def _save(self) -> None:
        value = self.value()
        value.save(self._settings)
        self.changed.emit(value)

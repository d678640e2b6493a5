"""The top of the Chat panel: which model, with which plan (context, GPU layers), and Load.

The picker lists the library's models, the ones used last first; picking one (or a file with
Choose…) loads it. The advisor fills the bar through ``ctx.open_chat``; the two boxes override its
plan by hand, and Load loads again with them. Whatever is loaded is planned by the same core planner
as the terminal's (``plan_chat``), which predicts the memory of exactly those settings; a plan that
does not fit is refused with the nearest one that does, and "Load anyway" loads it regardless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.model_ref import ModelRef, same_file
from app.gui.panels.chat_engine import LoadedModel, LoadSpec
from app.gui.widgets.elided_label import ElidedLabel
from app.gui.widgets.library_combo import compact_combo, refresh_library_combo

MAX_N_CTX = 1 << 20  # llama.cpp accepts more, but no laptop holds a 1M-token cache of a useful model


class ModelBar(QWidget):
    # the user asked to load (the Load button, a model chosen in the advisor); True: "Load anyway"
    load_requested = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        self._spec: LoadSpec | None = None
        self._recent: tuple[ModelRef, ...] = ()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        pick = QHBoxLayout()
        self.picker = QComboBox()
        self.picker.setAccessibleName("Model")
        self.picker.setToolTip("Pick a model to load it: the ones you used last come first")
        self.picker.setPlaceholderText("Pick a model…")
        compact_combo(self.picker)
        self.picker.activated.connect(self._picked)
        label = QLabel("&Model:")
        label.setBuddy(self.picker)
        pick.addWidget(label)
        pick.addWidget(self.picker, 1)
        choose = QPushButton("Choose…")
        choose.setAccessibleName("Choose a model file and load it")
        choose.clicked.connect(self.choose_model)
        pick.addWidget(choose)
        lay.addLayout(pick)
        bar = QHBoxLayout()
        self.model_label = ElidedLabel("No model chosen")  # a long name shortens; the window keeps its width
        self.model_label.setAccessibleName("Model file")
        bar.addWidget(self.model_label, 1)
        self.n_ctx = QSpinBox()
        self.n_ctx.setRange(0, MAX_N_CTX)
        self.n_ctx.setSingleStep(512)
        self.n_ctx.setSpecialValueText("Default")
        self.n_ctx.setAccessibleName("Context length in tokens")
        self.n_ctx.setToolTip("Tokens the model can keep in mind; Default is 4,096 or the model's own limit")
        self.n_gpu_layers = QSpinBox()
        self.n_gpu_layers.setRange(-1, 999)
        self.n_gpu_layers.setSpecialValueText("Auto")
        self.n_gpu_layers.setValue(-1)
        self.n_gpu_layers.setAccessibleName("GPU layers")
        self.n_gpu_layers.setToolTip("Layers on the GPU; Auto uses the advisor's plan for this machine")
        for text, box in (("Conte&xt:", self.n_ctx), ("&GPU layers:", self.n_gpu_layers)):
            label = QLabel(text)
            label.setBuddy(box)
            bar.addWidget(label)
            bar.addWidget(box)
        self.load_button = QPushButton("&Load")
        self.load_button.setAccessibleName("Load the model")
        self.load_button.setToolTip("Load the model with this context and GPU layers (Alt+L)")
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(lambda: self.load_requested.emit(False))
        bar.addWidget(self.load_button)
        lay.addLayout(bar)
        refusal = QHBoxLayout()  # shown when the plan does not fit: why, and the choice to insist
        self.refusal = QLabel()
        self.refusal.setAccessibleName("Why the plan does not fit")
        self.refusal.setWordWrap(True)
        self.refusal.setStyleSheet("color: #b3261e")
        refusal.addWidget(self.refusal, 1)
        self.force_button = QPushButton("Load &anyway")
        self.force_button.setAccessibleName("Load the model although it does not fit")
        self.force_button.setToolTip(
            "Load these settings regardless; the model process may run out of memory"
        )
        self.force_button.clicked.connect(lambda: self.load_requested.emit(True))
        refusal.addWidget(self.force_button)
        lay.addLayout(refusal)
        self.show_refusal("", "")
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Model loading progress")
        self.progress.setRange(0, 1000)
        self.progress.hide()
        lay.addWidget(self.progress)
        self.status = QLabel("Pick a model above, in the Advisor or the Library, or a file with Choose…")
        self.status.setAccessibleName("Model status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)

    def set_model(self, path: str, load: dict[str, Any] | None = None) -> None:
        """A model and (from the advisor) its plan: n_ctx, n_gpu_layers, type_k."""
        load = load or {}
        ngl = load.get("n_gpu_layers")
        self._spec = LoadSpec(path, load.get("n_ctx"), ngl, str(load.get("type_k") or "F16"))
        self.n_ctx.setValue(int(load.get("n_ctx") or 0))
        self.n_gpu_layers.setValue(-1 if ngl is None else int(ngl))
        self.model_label.setText(Path(path).name)
        self.model_label.setToolTip(path)
        self.load_button.setEnabled(True)
        self._show_chosen()

    def _show_chosen(self) -> None:
        """The picker shows the chosen model, listed first if it was not (yet): a file chosen by
        hand, the advisor's, or one the listing has not reached."""
        if self._spec is None:
            return
        path = self._spec.model_path
        if self.picker.findData(path) < 0:
            self.picker.insertItem(0, Path(path).name, path)
            self.picker.setItemData(0, path, Qt.ItemDataRole.ToolTipRole)
        self.picker.setCurrentIndex(self.picker.findData(path))

    @property
    def chosen_path(self) -> str | None:
        return self._spec.model_path if self._spec is not None else None

    def refresh_picker(self, library: Any, recent: Sequence[ModelRef]) -> None:
        """List the library's models in the picker, the chosen one and then ``recent`` first."""
        self._recent = tuple(recent)
        first = [r.path for r in recent]
        if self._spec is not None:
            first.insert(0, self._spec.model_path)
        refresh_library_combo(self, library, self.picker, first=first, on_done=self._show_chosen,
                              empty_text="No models yet: Choose… a file, or download one in the Library")  # fmt: skip

    @Slot(int)
    def _picked(self, index: int) -> None:
        path = self.picker.itemData(index)
        if not isinstance(path, str):
            return
        known = next((r for r in self._recent if same_file(r.path, path)), None)  # its settings of last time
        self.set_model(path, known.load_settings() if known is not None else None)
        self.load_requested.emit(False)

    def spec(self, *, force: bool = False) -> LoadSpec | None:
        """What to load: the chosen model with the boxes' values (``force``: even if it does not fit)."""
        if self._spec is None:
            return None
        s = self._spec
        n_ctx = self.n_ctx.value() or None
        ngl = None if self.n_gpu_layers.value() < 0 else self.n_gpu_layers.value()
        return LoadSpec(s.model_path, n_ctx, ngl, s.type_k, force)

    @Slot()
    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        if path:
            self.set_model(path)
            self.load_requested.emit(False)

    def show_refusal(self, why: str, nearest: str) -> None:
        """The plan does not fit: say why and what does, and offer "Load anyway" ("" hides it)."""
        self.refusal.setText(f"{why} {nearest}".strip())
        self.refusal.setVisible(bool(why))
        self.force_button.setVisible(bool(why))

    def set_loading(self, loading: bool) -> None:
        if loading:
            self.show_refusal("", "")
        self.load_button.setEnabled(self._spec is not None and not loading)
        self.progress.setVisible(loading)
        if loading:
            self.progress.setValue(0)
            self.status.setText(f"Loading {self.model_label.text()}…")

    @Slot(float)
    def set_progress(self, fraction: float) -> None:
        self.progress.setValue(int(fraction * 1000))

    def show_loaded(self, model: LoadedModel) -> None:
        """The boxes show what llama.cpp really got (the advisor's Auto resolved to a number)."""
        self.n_ctx.setValue(model.loaded.n_ctx)
        self.n_gpu_layers.setValue(model.load.n_gpu_layers)
        if self._spec is not None:  # the resolved plan, so that Load again loads the same
            self._spec = LoadSpec(model.load.model_path, model.loaded.n_ctx, model.load.n_gpu_layers,
                                  model.load.type_k)  # fmt: skip
        self.status.setText(f"{model.name} is loaded: {model.loaded.n_ctx:,}-token context, "
                            f"{model.load.n_gpu_layers} GPU layers, in {model.loaded.load_s:.1f} s. "
                            f"{model.template_note} {model.warning}".rstrip())  # fmt: skip

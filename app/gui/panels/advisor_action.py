"""The Advisor's one button, and the note and second button beside it when a file the user has is
not the ★ recommendation. What the button offers depends on where the model is:

- a local GGUF: "Chat with it" — ``ctx.open_chat`` with the file's own plan (its quantization is
  the one that runs), then the Chat panel. When the advisor would pick another quantization the
  button says "Chat with the file you have", the note says why (the core's
  :func:`app.core.advice.file_verdict.verdict_for_file`) and, when the model is a catalog model,
  a second button downloads the ★ quantization;
- a GGUF on the Hub: "Download and chat" that file, and the ★ one from the same repo if it differs;
- a catalog/Hub model with a known GGUF repo: "Download <selected> and chat" — the panel's
  ``pull_requested`` carries the choice; the window hands it to the Library panel;
- a local checkpoint folder: "Convert" — ``convert_requested`` (folder, precision), to Convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from app.core.advice.recommend import Plan
    from app.core.model.info import ModelInfo
    from app.gui.panels.advisor import AdvisorPanel
    from app.gui.panels.advisor_compute import AdvisorResult
    from app.gui.panels.advisor_source import ModelRequest


@dataclass(frozen=True)
class Action:
    text: str
    why: str  # the tooltip: what pressing it does, or why it is off
    enabled: bool
    note: str = ""  # beside the button: why the file's quantization is not the ★ one
    alternative: dict[str, Any] | None = None  # what "Download <★> and chat" pulls (pull_requested)


def gguf_repo(model: ModelInfo) -> str | None:
    """The first GGUF repo the catalog lists for the model (a catalog model, its original Hub repo,
    or a file the catalog recognises)."""
    from app.core.advice.naming import catalog_entry_for

    entry = catalog_entry_for(model)
    return entry.gguf_repos[0] if entry and entry.gguf_repos else None


def action_for(
    model: ModelInfo | None, result: AdvisorResult | None, selected: Plan, request: ModelRequest | None = None
) -> Action:
    if model is None or result is None:
        return Action("Chat with it", "", False)
    if model.source_kind in ("gguf", "hf_gguf"):  # one file: its own quantization is what runs
        return _file_action(model, result, request)
    if model.source_kind == "hf_dir":
        return Action(f"Convert to {selected.quant}", "Open the Convert panel with this folder.", True)
    if gguf_repo(model) is not None:
        return Action(f"Download {selected.quant} and chat", "Download this quantization from the Hub.", True)
    return Action(
        "Download and chat", "No GGUF repo is known for this model: download and convert it.", False
    )


def _file_action(model: ModelInfo, result: AdvisorResult, request: ModelRequest | None) -> Action:
    from app.core.advice.file_verdict import verdict_for_file

    own = result.plan_for(model.file_type or "")
    verdict = verdict_for_file(own, result.recommended)
    local = model.source_kind == "gguf"
    if own is None or not verdict.runs:
        return Action("Chat with it" if local else "Download and chat",
                      "This file does not fit with these settings.", False, verdict.sentence,
                      _alternative(model, result, request, verdict.better_quant))  # fmt: skip
    if local:
        verb = "Chat with the file you have" if verdict.better_quant else "Chat with it"
        why = "Load this file in the Chat panel."
    else:
        verb = "Download this file and chat" if verdict.better_quant else "Download and chat"
        why = f"Download {model.source}."
    alt = _alternative(model, result, request, verdict.better_quant)
    note = verdict.sentence + (" Download it?" if alt is not None else "")
    return Action(f"{verb} ({own.quant}, {own.n_ctx:,} tokens)", why, True, note.strip(), alt)


def _alternative(
    model: ModelInfo, result: AdvisorResult, request: ModelRequest | None, quant: str | None
) -> dict[str, Any] | None:
    """What to pull for the ★ quantization instead of the file: from the file's Hub repo, else
    from the catalog model's GGUF repo; None when neither is known."""
    rec = result.recommended
    if quant is None or rec is None:
        return None
    repo = request.repo_id if model.source_kind == "hf_gguf" and request is not None else None
    repo = repo or gguf_repo(model)
    if repo is None:
        return None
    return {"repo_id": repo, "quant": quant, "n_ctx": rec.n_ctx, "n_gpu_layers": rec.n_gpu_layers}


def perform_action(
    panel: AdvisorPanel, model: ModelInfo, result: AdvisorResult, selected: Plan, request: ModelRequest | None
) -> None:
    ctx = panel.ctx
    if model.source_kind == "gguf":
        own = result.plan_for(model.file_type or "")
        if own is None:
            return
        ctx.open_chat.emit(model.source, {
            "n_ctx": own.n_ctx, "n_gpu_layers": own.n_gpu_layers, "type_k": own.type_k,
            "predicted": {"ram_bytes": own.ram_bytes, "vram_bytes": own.vram_bytes},
        })  # fmt: skip
        ctx.show_panel.emit("chat")
    elif model.source_kind == "hf_dir":
        panel.convert_requested.emit(model.source, selected.quant)
    else:
        pull: dict[str, Any] = {"n_ctx": selected.n_ctx, "n_gpu_layers": selected.n_gpu_layers}
        if model.source_kind == "hf_gguf" and request is not None and request.repo_id:
            own = result.plan_for(model.file_type or "") or selected
            pull = {"repo_id": request.repo_id, "filename": request.filename, "quant": model.file_type,
                    "n_ctx": own.n_ctx, "n_gpu_layers": own.n_gpu_layers}  # fmt: skip
        else:
            pull |= {"repo_id": gguf_repo(model), "quant": selected.quant}
        panel.pull_requested.emit(pull)


class ActionBar(QWidget):
    """The button, the note that explains it (wrapped), and the second button for the ★ download."""

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.note = QLabel("")
        self.note.setAccessibleName("Why the file is not the recommended one")
        self.note.setWordWrap(True)
        self.note.hide()
        lay.addWidget(self.note)
        row = QHBoxLayout()
        self.button = QPushButton("Chat with it")
        self.button.setEnabled(False)
        self.alternative_button = QPushButton("")
        self.alternative_button.hide()
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignLeft)
        row.addWidget(self.alternative_button, 0, Qt.AlignmentFlag.AlignLeft)
        row.addStretch(1)
        lay.addLayout(row)
        self.alternative: dict[str, Any] | None = None

    def show_action(self, act: Action) -> None:
        self.button.setText(act.text)
        self.button.setAccessibleName(act.text)
        self.button.setToolTip(act.why)
        self.button.setEnabled(act.enabled)
        self.note.setText(act.note)
        self.note.setVisible(bool(act.note))
        self.alternative = act.alternative
        if act.alternative is not None:
            quant = act.alternative["quant"]
            self.alternative_button.setText(f"Download {quant} and chat")
            self.alternative_button.setAccessibleName(f"Download the recommended {quant} and chat")
            self.alternative_button.setToolTip(
                f"Download {quant} from {act.alternative['repo_id']}, then chat."
            )
        self.alternative_button.setVisible(act.alternative is not None)

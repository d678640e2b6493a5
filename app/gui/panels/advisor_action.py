"""The Advisor's one button: what it offers depends on where the model is.

- a local GGUF: "Chat with it" — ``ctx.open_chat`` with the file's own plan (its quantization is
  the one that runs), then the Chat panel;
- a GGUF on the Hub, or a catalog/Hub model with a known GGUF repo: "Download and chat" — the
  panel's ``pull_requested`` carries the choice; the window hands it to the Library panel;
- a local checkpoint folder: "Convert" — ``convert_requested`` (folder, precision), to Convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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


def gguf_repo(model: ModelInfo) -> str | None:
    """The first GGUF repo the catalog lists for a catalog model or its original Hub repo."""
    from app.core.model.catalog import find_entry_or_none

    entry = find_entry_or_none(model.source)
    return entry.gguf_repos[0] if entry and entry.gguf_repos else None


def action_for(model: ModelInfo | None, result: AdvisorResult | None, selected: Plan) -> Action:
    if model is None or result is None:
        return Action("Chat with it", "", False)
    if model.source_kind in ("gguf", "hf_gguf"):  # one file: its own quantization is what runs
        own = result.plan_for(model.file_type or "")
        verb = "Chat with it" if model.source_kind == "gguf" else "Download and chat"
        if own is None or own.fits == "no":
            return Action(verb, "This file does not fit with these settings.", False)
        why = (
            "Load this file in the Chat panel."
            if model.source_kind == "gguf"
            else f"Download {model.source}."
        )
        return Action(f"{verb} ({own.quant}, {own.n_ctx:,} tokens)", why, True)
    if model.source_kind == "hf_dir":
        return Action(f"Convert to {selected.quant}", "Open the Convert panel with this folder.", True)
    if gguf_repo(model) is not None:
        return Action(f"Download {selected.quant} and chat", "Download this quantization from the Hub.", True)
    return Action(
        "Download and chat", "No GGUF repo is known for this model: download and convert it.", False
    )


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

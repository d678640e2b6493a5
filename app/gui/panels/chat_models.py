"""Which model the chat uses: the ones used last — kept in the app's settings, listed first in the
model picker, the first loaded again when the panel starts — and, for an old chat written by
another model, the offer to load that one. The rules are :mod:`app.core.chat.recent`'s and
:mod:`app.core.chat.model_ref`'s; this module keeps them in the settings and words them."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from app.core.chat import recent
from app.core.chat.model_ref import ModelRef, conversation_model, same_file
from app.core.chat.records import Conversation

RECENT_KEY = "chat/recent_models"  # app settings: the models used last (JSON, app.core.chat.recent)


class ModelMemory:
    """The models used last, most recent first, saved at every change."""

    def __init__(self, settings: QSettings) -> None:
        self._settings = settings
        self.recent = recent.from_json(settings.value(RECENT_KEY))

    def remember(self, used: ModelRef) -> None:
        self.recent = recent.remember(self.recent, used)
        self._settings.setValue(RECENT_KEY, recent.to_json(self.recent))

    def last(self) -> tuple[ModelRef | None, str]:
        """The model to load again at start, or None and why not ("" when none was used yet)."""
        if not self.recent:
            return None, ""
        last = self.recent[0]
        if not last.present:
            return None, f"The model used last, {last.label}, is no longer at {last.path}."
        return last, ""


def own_model_offer(
    conv: Conversation, current_path: str | None, loaded: str | None
) -> tuple[str, ModelRef | None]:
    """What to say about ``conv``'s own model when ``current_path`` is loaded or chosen (``loaded``:
    the loaded model's label), and the model to offer ("" and None: it is the same one)."""
    ref = conversation_model(conv)
    if ref is None or (current_path is not None and same_file(ref.path, current_path)):
        return "", None
    if not ref.present:
        return f"This chat was written by {ref.label}; its file is gone from {ref.path}.", None
    return f"This chat was written by {ref.label}{f'; {loaded} is loaded' if loaded else ''}.", ref

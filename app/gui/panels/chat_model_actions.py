"""The Chat panel's model: loading one — the Advisor's plan (``ctx.open_chat``), the model picker,
"Load again" after the model process died, the model used last when the panel starts, the model an
old chat was written with — and what comes back: loaded (then remembered, first in the picker and
at the next start), or refused by the planner with its reason. A load asked for while an answer
streams stops the answer first and starts once it is stored.

Which models were used last and what to say about a chat's own model are
:mod:`app.gui.panels.chat_models`' rules; this is the panel's side of them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Slot

from app.gui.panels.chat_engine import LoadedModel
from app.gui.panels.chat_models import own_model_offer


class ModelActions:
    """Mixed into :class:`app.gui.panels.chat.ChatPanel`, whose widgets and state these use."""

    @Slot(str, dict)
    def open_model(self, path: str, load: dict[str, Any]) -> None:
        """``ctx.open_chat``: show the advisor's plan in the override boxes and load it."""
        self.model_bar.set_model(path, load)
        self.load_model()

    @Slot(bool)
    def load_model(self, force: bool = False) -> None:
        spec = self.model_bar.spec(force=force)
        if spec is None or self.state == "loading":
            return
        if self.state == "answering":
            self._load_after_answer = True  # stop first; the answer is stored, then the load starts
            self.stop()
            return
        self._show_error("")
        self.offer.show_text("")
        self._set_state("loading")
        self.engine.load(spec, conversation_id=self.conversation_id, chat=self.settings_panel.value())

    @Slot()
    def load_again(self) -> None:
        """After the model process died: the same model, with the settings it had."""
        self.load_model()

    @Slot()
    def choose_smaller_plan(self) -> None:
        """Memory may have run out: the Advisor, for this model, to pick a plan that fits."""
        path = self.model_bar.chosen_path
        if path is not None:
            self.advise_requested.emit(path)
            self.ctx.show_panel.emit("advisor")

    @Slot()
    def _reload_last(self) -> None:
        """At start: load the model used last again, if nothing was asked for meanwhile. The planner
        decides as for any load: a plan that no longer fits is shown chosen, with the reason."""
        if self.state != "empty" or self.model_bar.chosen_path is not None:
            return
        last, why_not = self.memory.last()
        if last is None:
            if why_not:
                self.status.setText(why_not)
            return
        self.model_bar.set_model(last.path, last.load_settings())
        self.load_model()

    @Slot()
    def _refresh_picker(self) -> None:
        self.model_bar.refresh_picker(self.ctx.library, self.memory.recent)

    @Slot(object)
    def _on_loaded(self, model: LoadedModel) -> None:
        self.model = model
        self._set_state("ready")
        self.model_bar.show_loaded(model)
        if model.ref is not None:  # remembered first in the picker, and loaded at the next start
            self.memory.remember(model.ref)
            self._refresh_picker()
        self._refresh_list()
        self._metrics_timer.start()
        self._emit_metrics()

    def _offer_own_model(self) -> None:
        """An old chat written by another model than the one loaded (or chosen): offer to load it."""
        if self.conversation_id is None:
            return
        current = self.model.load.model_path if self.model is not None else self.model_bar.chosen_path
        conv = self.store().get_conversation(self.conversation_id)
        text, self._offered = own_model_offer(conv, current, self.model.label if self.model else None)
        if self._offered is not None:
            self.offer_button.setText(f"Load {self._offered.label}")
        self.offer.show_text(text, *([self.offer_button] if self._offered is not None else []))

    @Slot()
    def load_offered(self) -> None:
        """Load the model the open chat was written with, with its settings of then."""
        ref = self._offered
        if ref is not None:
            self.model_bar.set_model(ref.path, ref.load_settings())
            self.load_model()

    @Slot(str, str)
    def _on_refused(self, why: str, nearest: str) -> None:
        self.model_bar.show_refusal(why, nearest)
        self._set_state("ready" if self.model is not None else "empty")
        chosen = self.model_bar.model_label.text()
        kept = f" {self.model.label} stays loaded." if self.model is not None else ""
        self.status.setText(f"{chosen} is chosen but not loaded: that plan does not fit here.{kept}")

    def _after_answer(self) -> None:
        """The answer ended, stored or failed: start the load that was asked for meanwhile."""
        if self._load_after_answer:
            self._load_after_answer = False
            self.load_model()

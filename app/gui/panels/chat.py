"""The Chat panel: conversations on the left, the chat in the middle, system prompt and sampling on
the right, and the model with its plan (context, GPU layers) on top.

The panel only renders and forwards: prompts, templates, trimming and storage are
:class:`app.engine.chat.ChatSession`'s, run by :class:`ChatEngine` on its own thread. This module
holds the layout, the wiring and the answer's course (send, stream, stop, edit, regenerate, fail);
which model runs is the part in :mod:`app.gui.panels.chat_model_actions`, the stored conversations
the part in :mod:`app.gui.panels.chat_conversation_actions`. If the model process dies the panel
says so in plain words, keeps the conversation, and offers "Load again" (and, when memory may have
run out, "Choose a smaller plan": the Advisor, for this model).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.model_ref import ModelRef
from app.gui.context import AppContext, ChatModel
from app.gui.panels.chat_column import ChatColumn
from app.gui.panels.chat_conversation_actions import ConversationActions
from app.gui.panels.chat_conversations import ConversationList
from app.gui.panels.chat_engine import AnswerResult, ChatEngine, Failure, LoadedModel
from app.gui.panels.chat_metrics import AnswerMeter
from app.gui.panels.chat_model_actions import ModelActions
from app.gui.panels.chat_models import ModelMemory
from app.gui.panels.chat_settings import ChatSettingsPanel
from app.gui.widgets.side_panes import SidePaneSplitter

METRICS_TICK_MS = 1000  # the status bar's live numbers refresh once a second while a model is loaded
_Q = Qt.ConnectionType.QueuedConnection  # engine signals come from its thread: run slots on ours


class ChatPanel(ModelActions, ConversationActions, QWidget):
    """Chat with a local model. ``n_threads`` overrides llama.cpp's thread count (0: its default)."""

    # model path: plan this model again in the Advisor ("Choose a smaller plan" after it ran out of memory)
    advise_requested = Signal(str)

    def __init__(self, ctx: AppContext, *, n_threads: int = 0) -> None:
        super().__init__()
        self.ctx = ctx
        self.state = "empty"  # "empty" (no model) | "loading" | "ready" | "answering"
        self.conversation_id: int | None = None
        self.model: LoadedModel | None = None
        self._editing: int | None = None  # id of the user message being rewritten
        self._store: Any = None
        self.meter = AnswerMeter()
        self._load_after_answer = False
        self.engine = ChatEngine(
            profile=lambda: ctx.profile, n_threads=n_threads, workers=lambda: ctx.workers
        )
        self.memory = ModelMemory(ctx.settings)  # the models used last
        self._offered: ModelRef | None = None  # the open chat's own model, offered for loading
        self._build()
        self._connect()
        self._refresh_list()
        self._set_state("empty")
        self._refresh_picker()
        # after the window's own requests (an open_chat that built this panel wins over the last model)
        QTimer.singleShot(0, self, self._reload_last)

    # --- layout ---------------------------------------------------------------------------------

    def _build(self) -> None:
        split = SidePaneSplitter()  # the side panes fold away on a narrow window
        QVBoxLayout(self).addWidget(split)
        self.conversations = ConversationList()
        split.addWidget(self.conversations)

        center = ChatColumn(send=self.send, stop=self.stop, regenerate=self.regenerate)
        self.model_bar, self.status, self.view, self.input = (
            center.model_bar,
            center.status,
            center.view,
            center.input,
        )
        self.error, self.notice, self.edit_note = center.error, center.notice, center.edit_note
        self.send_button, self.stop_button, self.regen_button = center.send, center.stop, center.regen
        self.load_again_button, self.smaller_plan_button = center.load_again, center.smaller_plan
        self.offer, self.offer_button = center.offer, center.offer_button
        split.addWidget(center)

        self.settings_panel = ChatSettingsPanel(self.ctx.settings)
        side = QScrollArea()
        side.setWidgetResizable(True)
        side.setWidget(self.settings_panel)
        side.setAccessibleName("Chat settings")
        side.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side.setMinimumWidth(
            self.settings_panel.sizeHint().width() + side.verticalScrollBar().sizeHint().width()
        )
        split.addWidget(side)
        split.setStretchFactor(1, 1)
        split.setSizes([200, 700, 300])
        split.set_panes(main=1, fold_order=(2, 0))  # settings fold first, then the conversations
        center.set_tab_order()

    def _connect(self) -> None:
        e = self.engine
        e.progress.connect(self.model_bar.set_progress, _Q)
        e.loaded.connect(self._on_loaded, _Q)
        e.loaded.connect(self._share_model, _Q)
        e.chunk.connect(self._on_chunk, _Q)
        e.first_token.connect(self._on_first_token, _Q)
        e.trimmed.connect(self._on_trimmed, _Q)
        e.template_fallback.connect(self._notify, _Q)
        e.conversation_created.connect(self._on_created, _Q)
        e.answered.connect(self._on_answered, _Q)
        e.failed.connect(self._on_failed, _Q)
        e.refused.connect(self._on_refused, _Q)
        self.load_again_button.clicked.connect(self.load_again)
        self.smaller_plan_button.clicked.connect(self.choose_smaller_plan)
        self.offer_button.clicked.connect(self.load_offered)
        self.ctx.open_chat.connect(self.open_model)
        self.ctx.library_changed.connect(self._refresh_picker)
        self.model_bar.load_requested.connect(self.load_model)
        self.conversations.selected.connect(self._on_selected)
        self.conversations.new_requested.connect(self.new_chat)
        self.conversations.delete_confirmed.connect(self._delete_chat)
        self.conversations.rename_requested.connect(self.rename_chat)
        self.conversations.export_requested.connect(self.export_chat)
        self.conversations.search_changed.connect(lambda _text: self._refresh_list())
        self.view.edit_requested.connect(self._on_edit_requested)
        self.view.branch_requested.connect(self.show_branch)
        self.input.textChanged.connect(self._update_buttons)
        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys, slot in (("Ctrl+Return", self.send), ("Ctrl+Enter", self.send), ("Esc", self.escape),
                           ("Ctrl+N", self.new_chat), ("Ctrl+R", self.regenerate)):  # fmt: skip
            QShortcut(QKeySequence(keys), self, slot, context=ctx)
        self._metrics_timer = QTimer(self)
        self._metrics_timer.setInterval(METRICS_TICK_MS)
        self._metrics_timer.timeout.connect(self._emit_metrics)

    # --- answers --------------------------------------------------------------------------------

    @Slot()
    def send(self) -> None:
        text = self.input.toPlainText().strip()
        if not text or self.state != "ready":
            if self.state == "empty":
                self._notify("Load a model first: pick one in the Advisor, or a file with Choose…")
            return
        self.input.clear()
        chat = self.settings_panel.value()
        if self._editing is not None and self.conversation_id is not None:
            mid, self._editing = self._editing, None
            self.edit_note.hide()
            ids = [w.message_id for w in self.view.messages()]
            self.view.drop_from(ids.index(mid) if mid in ids else len(ids))
            self.view.add_message("user", text)
            self._begin_answer()
            self.engine.edit(self.conversation_id, mid, text, chat)
            return
        self.view.add_message("user", text)
        self._begin_answer()
        self.engine.send(self.conversation_id, text, chat)

    @Slot()
    def regenerate(self) -> None:
        if self.state != "ready" or self.conversation_id is None:
            return
        widgets = self.view.messages()
        if not any(w.role == "user" for w in widgets):
            return
        if widgets[-1].role == "assistant":
            self.view.drop_from(len(widgets) - 1)
        self._begin_answer()
        self.engine.regenerate(self.conversation_id, self.settings_panel.value())

    @Slot()
    def stop(self) -> None:
        if self.state == "answering":
            self.engine.cancel()
            self._notify("Stopping…")

    @Slot()
    def escape(self) -> None:
        if self.state == "answering":
            self.stop()
        else:
            self._cancel_edit()

    @Slot(int, str)
    def _on_edit_requested(self, message_id: int, text: str) -> None:
        if self.state == "answering":
            return
        self._editing = message_id
        self.input.setPlainText(text)
        self.edit_note.show()
        self.input.setFocus()

    def _cancel_edit(self) -> None:
        if self._editing is not None:
            self._editing = None
            self.input.clear()
        self.edit_note.hide()

    def _begin_answer(self) -> None:
        self._show_error("")
        self._notify("")
        self.offer.show_text("")
        self.meter.start()
        self.view.begin_answer(self.model.label if self.model is not None else None)
        self._set_state("answering")

    @Slot(float)
    def _on_first_token(self, ms: float) -> None:
        self.meter.first_token(ms)

    @Slot(object)
    def _on_chunk(self, chunk: Any) -> None:
        self.meter.add(chunk.n_tokens)
        self.view.append_answer(chunk.text)

    @Slot(int)
    def _on_trimmed(self, n_messages: int) -> None:
        self._notify(f"Left out the {n_messages} oldest messages so the chat fits the context.")

    @Slot(object)
    def _on_answered(self, result: AnswerResult) -> None:
        done = result.done
        self.view.end_answer(
            "partial" if done is not None and done.stop_reason == "cancelled" else "complete"
        )
        self.meter.finish(done)
        if self.notice.text() == "Stopping…":
            kept = bool(self.view.answer_text().strip())
            self._notify("Stopped; the answer so far is kept." if kept else "Stopped before the first word.")
        self._set_state("ready")
        self.conversation_id = result.conversation_id
        self._refresh_list()  # the title comes from the first message
        self._show_thread(sync=True)  # the stored messages' ids, for Edit
        self._emit_metrics()
        self._after_answer()

    @Slot(object)
    def _on_failed(self, failure: Failure) -> None:
        message, hint = failure.message, failure.hint
        was = self.state
        if was == "answering":
            self.view.end_answer("error")
            self.meter.finish()
        actions = []
        if failure.process_ended and self.model_bar.chosen_path is not None:
            actions.append(self.load_again_button)  # buttons, not instructions
            if failure.maybe_memory:
                actions.append(self.smaller_plan_button)
        # with buttons, the hint ("Load the model again.") is what they offer: the sentence suffices
        self._show_error(message + (f" {hint}" if hint and not actions else ""), *actions)
        self.ctx.error.emit(message, hint)
        if failure.process_ended or was == "loading":
            self.model = None
            self.ctx.set_chat_model(None)  # its process is gone: the Server panel stops serving it
            self._metrics_timer.stop()
            self.ctx.engine_metrics.emit({})
            self.status.setText("No model is loaded.")
        self._set_state("ready" if self.model is not None else "empty")
        if was == "answering" and self.conversation_id is not None:
            self._refresh_list()
            self._show_thread()  # what was stored: the question, and a partial answer if any
            self._after_answer()

    # --- numbers and state ----------------------------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """What the status bar shows: speed and latency, measured and predicted memory."""
        predicted = self.model.predicted if self.model is not None else {}
        return self.meter.snapshot(self.engine.memory(), predicted)

    @Slot(object)
    def _share_model(self, model: LoadedModel) -> None:
        """Offer the loaded model to the other panels: the Server panel serves it through this process."""
        self.ctx.set_chat_model(ChatModel(self.engine.client, model.load, model.label))

    @Slot()
    def _emit_metrics(self) -> None:
        if self.model is not None:
            self.ctx.engine_metrics.emit(self.metrics())

    def _notify(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def _show_error(self, text: str, *actions: Any) -> None:
        self.error.show_text(text, *actions)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.model_bar.set_loading(state == "loading")
        self._update_buttons()

    @Slot()
    def _update_buttons(self) -> None:
        s = self.state
        self.send_button.setEnabled(s == "ready" and bool(self.input.toPlainText().strip()))
        self.stop_button.setEnabled(s == "answering")
        self.regen_button.setEnabled(s == "ready" and self.conversation_id is not None)
        self.conversations.set_busy(s == "answering")
        for w in self.view.messages():
            w.set_busy(s == "answering")

    def shutdown(self) -> None:
        """The window is closing: end the model process and close the store."""
        self.ctx.set_chat_model(None)  # first: the server stops using the process before it ends
        self._metrics_timer.stop()
        self.engine.shutdown()
        if self._store is not None:
            self._store.close()
            self._store = None

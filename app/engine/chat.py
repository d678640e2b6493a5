"""A conversation with a loaded model: history from the store, the chat template, trimming to
the context, streaming through the engine, and every finished (or stopped) answer saved.

Shared by the CLI and the GUI; a plain object whose long calls are generators of events. Each
answer is one request, named by an id the caller may allocate first (:meth:`new_request_id`):
``cancel(request_id)`` from any thread stops it wherever it is — queued, trimming the history,
evaluating the prompt or writing — and it then ends with ``Done(stop_reason="cancelled")``.

Each answer is stored with the label of the model that wrote it, and the conversation with that
model's file and plan; its time to first token (``first_token_ms``) is measured here, from the
start of the turn, so that the window can show the same figure live and afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.chat.model_ref import model_label, same_file
from app.core.chat.store import ChatStore, Message
from app.core.chat.template import ChatTemplate, select_template, trim_history
from app.core.chat.titles import NEW_CHAT_TITLE
from app.core.model.gguf_header import read_gguf_file
from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.errors import RequestCancelled
from app.engine.monitor import MemoryMonitor
from app.engine.profile_record import ProfileRecorder, model_name_and_quant
from app.engine.profile_record import record_load_failure as _record_load_failure
from app.engine.renderer import TemplateRenderer

TurnEvent = P.TokenChunk | P.Done  # what a turn yields, besides Trimmed and TemplateFallback


@dataclass(frozen=True)
class Trimmed:
    """Older turns were left out so the prompt fits the context (the user is told)."""

    n_messages: int


@dataclass(frozen=True)
class TemplateFallback:
    """The file's chat template failed; this answer and the rest of the chat use the built-in one."""

    sentence: str  # ChatTemplate.describe() of the template now used


class ChatSession:
    def __init__(self, client: EngineClient, store: ChatStore, load: P.Load, *, system_prompt: str = "",
                 sampling: P.Sampling | None = None, conversation_id: int | None = None,
                 plan: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.client = client
        self.store = store
        self.load_request = load
        self.system_prompt = system_prompt
        self.sampling = sampling or P.Sampling()
        self.plan = plan or {}
        self.conversation_id = conversation_id
        self.template: ChatTemplate | None = None
        self.renderer = TemplateRenderer()  # a file's template runs in a process of its own
        self.monitor = MemoryMonitor(0)  # the last answer's; replaced by each answer
        self.loaded: P.Loaded | None = None
        header = read_gguf_file(load.model_path)
        self._metadata = header.metadata
        self._arch = header.architecture
        self._header_name = str(header.metadata.get("general.name") or Path(load.model_path).stem)
        self._name, file_quant = model_name_and_quant(load.model_path, header)
        quant = self.plan.get("quant")
        self.recorder = ProfileRecorder(load, quant=quant if isinstance(quant, str) else file_quant or "unknown",
                                        model_name=self._name)  # every answer and failed load is a profile  # fmt: skip
        # The current turn's time to first token, from its start; None until its first token.
        self.first_token_ms: float | None = None
        self._turn_t0 = 0.0

    @property
    def model_name(self) -> str:
        """The model's own name (the file's ``general.name``), else the file's stem."""
        return self._name

    @property
    def model_label(self) -> str:
        """ "SmolLM2 135M Instruct · Q4_1": the model as answers are labelled with it."""
        quant = self.plan.get("quant")
        return model_label(self._name, quant if isinstance(quant, str) else None)

    def start(self, on_progress: Callable[[float], None] | None = None, *,
              open_conversation: bool = True) -> P.Loaded:  # fmt: skip
        """Load the model (``on_progress`` gets 0..1) and open a conversation if none was given
        (unless ``open_conversation`` is False: the first :meth:`send` needs one then)."""
        self.template = select_template(self._metadata, architecture=self._arch, name_hint=self._header_name)
        if self.template.source == "gguf":
            self.renderer.warm()  # its start overlaps the model's load
        try:
            self.client.start()
            with MemoryMonitor(self.client.pid or 0) as mon:
                self.loaded = self.client.load(self.load_request, on_progress=on_progress)
        except BaseException as exc:  # no chat without a model: nobody will close() this session
            self.renderer.close()
            _record_load_failure(self.recorder, exc)
            raise
        self.load_peak = mon.peak
        if self.conversation_id is None and open_conversation:
            self.new_conversation()
        return self.loaded

    def new_conversation(self) -> int:
        """Start a new, empty conversation with this model and these settings; it becomes current."""
        conv = self.store.create_conversation(
            title=NEW_CHAT_TITLE, model=self.load_request.model_path, plan=self._plan_record(),
            settings={"system_prompt": self.system_prompt, "sampling": asdict(self.sampling)},
        )  # fmt: skip
        self.conversation_id = int(conv.id)
        return self.conversation_id

    def _plan_record(self) -> dict[str, Any]:
        """What a conversation keeps about the model that answers in it: name, plan, load settings."""
        load = {k: v for k, v in asdict(self.load_request).items() if k != "model_path"}
        return {**self.plan, **load, "model_name": self._name}

    # --- turns, each one request ---------------------------------------------------------

    def new_request_id(self) -> int:
        """An id for the next turn, to pass to send/regenerate/edit and to :meth:`cancel`."""
        return self.client.new_request_id()

    def cancel(self, request_id: int) -> None:
        """Stop the turn ``request_id``: from any thread, before or while it runs."""
        self.client.cancel(request_id)

    def send(self, text: str, *, request_id: int | None = None) -> Iterator[TurnEvent | Trimmed]:
        assert self.conversation_id is not None, "start() first"
        rid = self.new_request_id() if request_id is None else request_id
        self._begin_turn()
        thread = self.store.thread(self.conversation_id)
        parent = thread[-1].id if thread else None
        if not thread and self.system_prompt:
            parent = self.store.add_message(
                self.conversation_id, role="system", content=self.system_prompt
            ).id
        # the store titles a new chat after its first question (app.core.chat.titles)
        user = self.store.add_message(self.conversation_id, role="user", content=text, parent_id=parent)
        yield from self._answer(self.store.thread(self.conversation_id, leaf_id=user.id), user.id, rid)

    def regenerate(self, *, request_id: int | None = None) -> Iterator[TurnEvent | Trimmed]:
        assert self.conversation_id is not None, "start() first"
        rid = self.new_request_id() if request_id is None else request_id
        self._begin_turn()
        history, parent_id = self.store.branch_for_regenerate(self.conversation_id)
        yield from self._answer(history, parent_id, rid)

    def edit(
        self, message_id: int, new_text: str, *, request_id: int | None = None
    ) -> Iterator[TurnEvent | Trimmed]:
        assert self.conversation_id is not None, "start() first"
        rid = self.new_request_id() if request_id is None else request_id
        self._begin_turn()
        user = self.store.edit_user_message(message_id, new_text)
        yield from self._answer(self.store.thread(self.conversation_id, leaf_id=user.id), user.id, rid)

    def _begin_turn(self) -> None:
        self._turn_t0, self.first_token_ms = time.perf_counter(), None

    def _answer(
        self, history: list[Message], parent_id: int | None, rid: int
    ) -> Iterator[TurnEvent | Trimmed]:
        assert self.loaded is not None and self.template is not None and self.conversation_id is not None
        template_before = self.template
        try:
            prompt, sampling, dropped = self._prompt(history, rid)
        except RequestCancelled:  # Stop pressed while the history was being trimmed
            yield P.Done.cancelled_before_start(rid)
            return
        if self.template is not template_before:
            yield TemplateFallback(self.template.describe())
        if dropped:
            yield Trimmed(dropped)
        text: list[str] = []
        done: P.Done | None = None
        t0 = time.perf_counter()
        self.monitor = MemoryMonitor(self.client.pid or 0)
        try:
            with self.monitor:
                for ev in self.client.generate(prompt, sampling, request_id=rid):
                    if isinstance(ev, P.TokenChunk):
                        if self.first_token_ms is None:
                            self.first_token_ms = (time.perf_counter() - self._turn_t0) * 1000
                        text.append(ev.text)
                    else:
                        done = ev
                    yield ev
        finally:
            self._store_answer("".join(text).strip(), done, parent_id, time.perf_counter() - t0)

    def _prompt(self, history: list[Message], rid: int) -> tuple[str, P.Sampling, int]:
        """(prompt, sampling with the template's stop strings, messages left out) for ``history``.
        Each trimming step counts tokens as part of request ``rid``: a cancel stops it there."""
        assert self.loaded is not None and self.template is not None
        messages = [{"role": m.role, "content": m.content} for m in history]
        budget = self.loaded.n_ctx - self.sampling.max_tokens
        kept, dropped = trim_history(
            messages, count_tokens=lambda text: self.client.count_tokens(text, request_id=rid),
            budget_tokens=max(budget, self.loaded.n_ctx // 2),
            render_prompt=lambda msgs: self._render(msgs, rid),
        )  # fmt: skip
        prompt = self._render(kept, rid)
        sampling = P.Sampling(
            **{**asdict(self.sampling), "stop": tuple(self.sampling.stop) + self.template.stop_strings}
        )
        return prompt, sampling, dropped

    def _render(self, messages: list[dict[str, str]], rid: int) -> str:
        """The prompt for ``messages`` with this chat's template. When the file's template fails
        (an error, its deadline, its memory limit), the built-in one takes over for the rest of
        the chat, as its message promised."""
        assert self.loaded is not None and self.template is not None
        kwargs: dict[str, Any] = {"bos_token": self.loaded.bos_token, "eos_token": self.loaded.eos_token,
                                  "cancelled": lambda: self.client.is_cancelled(rid), "request_id": rid}  # fmt: skip
        prompt, self.template = self.renderer.with_fallback(self.template, messages, **kwargs)
        return prompt

    def close(self) -> None:
        """End the template process (the model process is the client's)."""
        self.renderer.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _store_answer(self, answer: str, done: P.Done | None, parent_id: int | None, wall_s: float) -> None:
        """Keep a finished answer, and a stopped one that has text (marked partial)."""
        assert self.conversation_id is not None
        status = "complete" if done is not None and done.stop_reason != "cancelled" else "partial"
        if not answer and status != "complete":
            return
        timings = asdict(done) if done is not None else {"wall_s": wall_s}
        peak = self.monitor.peak
        timings.update(
            first_token_ms=self.first_token_ms,  # the turn's wait, as the window showed it
            measured_rss_bytes=peak.child_rss_bytes,
            measured_vram_bytes=peak.child_vram_bytes,
            system_used_bytes=peak.system_used_bytes,
            predicted=self.plan.get("predicted"),  # the advisor's numbers, side by side
        )
        self.store.add_message(self.conversation_id, role="assistant", content=answer, status=status,
                               parent_id=parent_id, timings=timings, model=self.model_label)  # fmt: skip
        if done is not None and status == "complete" and self.loaded is not None:
            self.recorder.answered(self.loaded, done, peak)
        conv = self.store.get_conversation(self.conversation_id)
        if not same_file(conv.model, self.load_request.model_path) or conv.plan != self._plan_record():
            # another model (or plan) answers in this chat now: it is the one to load it with again
            self.store.set_model(self.conversation_id, model=self.load_request.model_path,
                                 plan=self._plan_record())  # fmt: skip

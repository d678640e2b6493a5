"""The Chat panel's link to the model process: load and answer jobs run one after another on the
panel's own worker lane (:class:`app.gui.workers.Lane`), and report through signals.

A lane rather than the shared pool: an answer can stream for minutes and must neither hold one of
the pool's threads nor wait behind another panel's work; its one thread also keeps the sqlite
connection and the engine client of the jobs. Every answer is one engine request whose id is taken
on the GUI thread before the job is queued, so Stop names it and wins wherever the answer is —
queued, trimming the history, reading the prompt or writing (``EngineClient.cancel`` is safe from
any thread and returns at once).

Signals are emitted on the GUI thread (the worker primitive delivers there); jobs never touch a
widget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.chat.model_ref import ModelRef
from app.engine import protocol as P
from app.gui.panels.chat_settings import ChatSettings
from app.gui.workers import Lane, start_worker

METRICS_INTERVAL_S = 1.0  # how often the model process's memory is sampled while loaded
SHUTDOWN_TIMEOUT_MS = 5000  # a stuck load is killed after this at quit


@dataclass(frozen=True)
class LoadSpec:
    """What to load: a GGUF file and the user's choices (``None``: the advisor decides)."""

    model_path: str
    n_ctx: int | None = None  # None: the advisor's default context, at most the model's own
    n_gpu_layers: int | None = None  # None: the advisor's best split for this machine
    type_k: str = "F16"  # KV cache type, K and V alike
    force: bool = False  # "Load anyway": the plan does not fit, the user insists


@dataclass(frozen=True)
class LoadedModel:
    """A model is ready: what the panel shows about it."""

    name: str  # the file's name
    load: P.Load
    loaded: P.Loaded
    conversation_id: int | None  # the chat it was loaded for; None: the first message makes one
    predicted: dict[str, int]
    template_note: str
    warning: str = ""  # loaded anyway: what will probably happen
    ref: ModelRef | None = None  # name, quantization and settings: to label answers, to load it again

    @property
    def label(self) -> str:
        """ "SmolLM2 135M Instruct · Q4_1" (answers carry the same label)."""
        return self.ref.label if self.ref is not None else self.name


@dataclass(frozen=True)
class Failure:
    """A load or an answer failed: what to say, and what the window can offer."""

    message: str
    hint: str
    process_ended: bool  # the model process is gone: "Load again"
    maybe_memory: bool  # it may have run out of memory: "Choose a smaller plan" too


@dataclass(frozen=True)
class AnswerResult:
    conversation_id: int
    done: P.Done | None  # None: the stream ended without a Done (should not happen)


def plan_load(spec: LoadSpec, profile: Any, workers: tuple[Any, ...] = ()) -> Any:
    """The ChatPlan for ``spec`` on this machine: :func:`app.core.advice.chat_plan.plan_chat`, the
    planner the terminal uses too. Raises DoesNotFitError unless it fits or ``spec.force``."""
    from app.core.advice.chat_plan import ChatOverrides, plan_chat
    from app.core.advice.recommend import budget_from_profile
    from app.core.model.source import model_from_gguf

    if profile is None:
        from app.core.machine.hardware import detect_machine

        profile = detect_machine(measure_bandwidth=False)  # no bandwidth: layers only
    overrides = ChatOverrides(n_ctx=spec.n_ctx, n_gpu_layers=spec.n_gpu_layers, type_kv=spec.type_k,
                              force=spec.force)  # fmt: skip
    budget = budget_from_profile(profile)
    if workers:  # the Machine panel's workers lend their memory too: asked again, as they are now
        from app.core.advice.pooling import with_workers
        from app.core.machine.workers import probe_workers

        budget = with_workers(budget, probe_workers(tuple(w.endpoint for w in workers)))
    return plan_chat(model_from_gguf(Path(spec.model_path)), budget, overrides).check()


@dataclass(frozen=True)
class _Refused:
    why: str
    nearest: str


@dataclass(frozen=True)
class _Created:
    conversation_id: int


@dataclass(frozen=True)
class _FirstToken:
    ms: float  # ChatSession.first_token_ms: the figure stored with the answer


class ChatEngine(QObject):
    """The model process and its conversation, driven through one lane; see the module docstring."""

    # load progress, 0..1
    progress = Signal(float)
    # LoadedModel: the model is ready
    loaded = Signal(object)
    # P.TokenChunk: more of the answer
    chunk = Signal(object)
    # number of older messages left out so the prompt fits the context
    trimmed = Signal(int)
    # The file's chat template failed; the sentence names the built-in one now used.
    template_fallback = Signal(str)
    # conversation id: a conversation was created for the first message of a new chat
    conversation_created = Signal(int)
    # ms from the start of the turn to the first token: the figure stored with the answer
    first_token = Signal(float)
    # AnswerResult: the answer ended (finished or stopped) and is stored
    answered = Signal(object)
    # Failure: a load or an answer failed (what to say; whether the process is gone, maybe for memory)
    failed = Signal(object)
    # (why it does not fit, the nearest plan that does): the load was refused; "Load anyway" forces it
    refused = Signal(str, str)

    def __init__(self, *, profile: Callable[[], Any] = lambda: None, n_threads: int = 0,
                 workers: Callable[[], tuple[Any, ...]] = tuple) -> None:  # fmt: skip
        super().__init__()
        from app.engine.client import EngineClient

        self.client = EngineClient()
        self._profile = profile
        self._workers = workers
        self._n_threads = n_threads  # 0: llama.cpp's default (physical cores); tests pass 1
        self._lane = Lane("chat-engine", parent=self)
        self._request: int | None = None  # the answer being written or queued (GUI thread)
        self._session: Any = None  # lane thread from here on
        self._store: Any = None
        self._monitor: Any = None
        self._closing = False  # the window is closing: queued jobs do nothing

    # --- called from the GUI thread -----------------------------------------------------------

    def load(self, spec: LoadSpec, *, conversation_id: int | None, chat: ChatSettings) -> None:
        start_worker(lambda report, cancel: self._load(spec, conversation_id, chat, report),
                     owner=self, lane=self._lane, name="chat load", on_yield=self.progress.emit,
                     on_return=self._loaded, on_error=self._failed)  # fmt: skip

    def send(self, conversation_id: int | None, text: str, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s, rid: s.send(text, request_id=rid))

    def regenerate(self, conversation_id: int, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s, rid: s.regenerate(request_id=rid))

    def edit(self, conversation_id: int, message_id: int, text: str, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s, rid: s.edit(message_id, text, request_id=rid))

    def cancel(self) -> None:
        """Stop the current answer now, wherever it is; it still ends with ``answered`` (stopped)."""
        if self._request is not None:
            self.client.cancel(self._request)

    def memory(self) -> Any:
        """The latest MemorySample of the model process, or None when no model is loaded."""
        monitor = self._monitor
        return monitor.latest if monitor is not None else None

    def shutdown(self, timeout_ms: int = SHUTDOWN_TIMEOUT_MS) -> None:
        """Stop any answer, end the model process and close the store (the window is closing)."""
        self._closing = True
        self.cancel()
        start_worker(lambda report, cancel: self._close(), lane=self._lane, name="chat close")
        if not self._lane.pool.waitForDone(timeout_ms):  # stuck in a load: the process goes
            self.client.kill()
            self._lane.pool.waitForDone(timeout_ms)

    def _answer(self, conversation_id: int | None, chat: ChatSettings,
                turn: Callable[[Any, int], Iterator[Any]]) -> None:  # fmt: skip
        rid = self._request = self.client.new_request_id()  # Stop from now on names this answer
        start_worker(lambda report, cancel: self._run_answer(conversation_id, chat, turn, rid),
                     owner=self, lane=self._lane, name=f"chat answer {rid}", on_yield=self._event,
                     on_return=self._answered, on_error=self._failed)  # fmt: skip

    def _loaded(self, result: Any) -> None:
        if isinstance(result, _Refused):
            self.refused.emit(result.why, result.nearest)
        elif result is not None:
            self.loaded.emit(result)

    def _event(self, ev: Any) -> None:
        from app.engine.chat import TemplateFallback, Trimmed

        if isinstance(ev, P.TokenChunk):
            self.chunk.emit(ev)
        elif isinstance(ev, Trimmed):
            self.trimmed.emit(ev.n_messages)
        elif isinstance(ev, TemplateFallback):
            self.template_fallback.emit(ev.sentence)
        elif isinstance(ev, _Created):
            self.conversation_created.emit(ev.conversation_id)
        elif isinstance(ev, _FirstToken):
            self.first_token.emit(ev.ms)

    def _answered(self, result: AnswerResult | None) -> None:
        self._request = None
        if result is not None:
            self.answered.emit(result)

    def _failed(self, message: str, hint: str, cancelled: bool) -> None:
        self._request = None
        ended = self.client.pid is None
        death = self.client.last_death if ended else None
        self.failed.emit(Failure(message, hint, ended, death is not None and death.maybe_memory))

    # --- on the lane's thread -----------------------------------------------------------------

    def _chat_store(self) -> Any:
        if self._store is None:  # sqlite connections belong to the thread that opened them
            from app.core.chat.store import ChatStore

            self._store = ChatStore()
        return self._store

    def _load(self, spec: LoadSpec, conversation_id: int | None, chat: ChatSettings,
              report: Callable[[float], None]) -> LoadedModel | _Refused | None:  # fmt: skip
        from app.core.errors import DoesNotFitError
        from app.engine.chat import ChatSession
        from app.engine.monitor import MemoryMonitor

        if self._closing:
            return None
        try:  # planned first: a refused plan leaves the loaded model as it was
            planned = plan_load(spec, self._profile(), self._workers())
        except DoesNotFitError as exc:
            return _Refused(str(exc), exc.hint or "")
        self._stop_monitor()
        self._end_session()
        load = P.Load.from_plan(planned, n_threads=self._n_threads)
        session = ChatSession(self.client, self._chat_store(), load, system_prompt=chat.system_prompt,
                              sampling=chat.sampling, conversation_id=conversation_id, plan=planned.to_record())  # fmt: skip
        loaded = session.start(on_progress=report, open_conversation=False)  # no empty chat per load
        self._session = session
        self._monitor = MemoryMonitor(self.client.pid or 0, interval_s=METRICS_INTERVAL_S).__enter__()
        note = session.template.describe() if session.template else ""
        warning = planned.risk() if planned.forced else ""
        ref = ModelRef(load.model_path, session.model_name, planned.quant,
                       spec.n_ctx, spec.n_gpu_layers, spec.type_k)  # the user's choices: Auto stays Auto  # fmt: skip
        return LoadedModel(Path(load.model_path).name, load, loaded, session.conversation_id, planned.predicted,
                           note, warning or "", ref)  # fmt: skip

    def _run_answer(self, conversation_id: int | None, chat: ChatSettings,
                    turn: Callable[[Any, int], Iterator[Any]], rid: int) -> Iterator[Any]:  # fmt: skip
        from app.core.errors import EngineError

        session = self._session
        if self._closing:
            return None
        if session is None or self.client.loaded is None:
            raise EngineError("No model is loaded.", hint="Choose a model and press Load.")
        session.system_prompt, session.sampling = chat.system_prompt, chat.sampling
        done: P.Done | None = None
        reported = False
        try:
            if conversation_id is None:
                conversation_id = session.new_conversation()
                yield _Created(conversation_id)
            session.conversation_id = conversation_id
            for ev in turn(session, rid):
                if isinstance(ev, P.Done):
                    done = ev
                    continue
                if isinstance(ev, P.TokenChunk) and session.first_token_ms is not None and not reported:
                    reported = True  # measured by the session: the live figure is the stored one
                    yield _FirstToken(session.first_token_ms)
                yield ev
        except Exception:
            if self.client.pid is None:  # the process is gone: so is the model
                self._stop_monitor()
                self._end_session()
            raise
        return AnswerResult(conversation_id, done)

    def _close(self) -> None:
        self._stop_monitor()
        self._end_session()
        self.client.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()  # its template process

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.__exit__(None, None, None)

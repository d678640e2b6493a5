"""The Chat panel's link to the model process: one dedicated thread owns the EngineClient and the
ChatSession, runs load and answer jobs one after another, and reports through signals.

Why its own thread rather than the shared pool: an answer can stream for minutes, and the pool has
as many threads as cores (two on a small laptop) — other panels' work must not queue behind it,
nor Stop behind their work. ``EngineClient`` is not thread-safe, so every call on it happens on
this thread, except Cancel: one line written to the child's stdin from a short-lived thread, so
Stop lands within milliseconds even while the engine thread waits for tokens.

Signals are emitted from the engine thread; connect them to a QObject's slot (queued) so they run
on the GUI thread. Worker code here never touches a widget.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.engine import protocol as P
from app.gui.panels.chat_settings import ChatSettings

log = logging.getLogger(__name__)

METRICS_INTERVAL_S = 1.0  # how often the model process's memory is sampled while loaded


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

    name: str
    load: P.Load
    loaded: P.Loaded
    conversation_id: int
    predicted: dict[str, int]
    template_note: str
    warning: str = ""  # loaded anyway: what will probably happen


@dataclass(frozen=True)
class AnswerResult:
    conversation_id: int
    done: P.Done | None  # None: the stream ended without a Done (should not happen)


def plan_load(spec: LoadSpec, profile: Any) -> Any:
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
    return plan_chat(model_from_gguf(Path(spec.model_path)), budget_from_profile(profile), overrides).check()


class ChatEngine(QObject):
    """The model process and its conversation, driven from one thread; see the module docstring."""

    # load progress, 0..1
    progress = Signal(float)
    # LoadedModel: the model is ready
    loaded = Signal(object)
    # P.TokenChunk: more of the answer
    chunk = Signal(object)
    # number of older messages left out so the prompt fits the context
    trimmed = Signal(int)
    # conversation id: a conversation was created for the first message of a new chat
    conversation_created = Signal(int)
    # AnswerResult: the answer ended (finished or stopped) and is stored
    answered = Signal(object)
    # (message, next step, the model process is gone): a load or an answer failed
    failed = Signal(str, str, bool)
    # (why it does not fit, the nearest plan that does): the load was refused; "Load anyway" forces it
    refused = Signal(str, str)

    def __init__(self, *, profile: Callable[[], Any] = lambda: None, n_threads: int = 0) -> None:
        super().__init__()
        from app.engine.client import EngineClient

        self.client = EngineClient()
        self._profile = profile
        self._n_threads = n_threads  # 0: llama.cpp's default (physical cores); tests pass 1
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._stop = threading.Event()  # Stop was pressed for the running (or queued) answer
        self._session: Any = None
        self._store: Any = None
        self._monitor: Any = None
        self._answering = False  # set on the engine thread while an answer streams
        self._closing = False  # the window is closing: queued jobs are skipped
        self._thread = threading.Thread(target=self._run, daemon=True, name="chat-engine")
        self._thread.start()

    # --- called from the GUI thread -----------------------------------------------------------

    def load(self, spec: LoadSpec, *, conversation_id: int | None, chat: ChatSettings) -> None:
        self._jobs.put(lambda: self._load(spec, conversation_id, chat))

    def send(self, conversation_id: int | None, text: str, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s: s.send(text))

    def regenerate(self, conversation_id: int, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s: s.regenerate())

    def edit(self, conversation_id: int, message_id: int, text: str, chat: ChatSettings) -> None:
        self._answer(conversation_id, chat, lambda s: s.edit(message_id, text))

    def cancel(self) -> None:
        """Stop the answer now: the flag covers an answer still queued, the line the running one."""
        self._stop.set()
        threading.Thread(target=self._send_cancel, daemon=True, name="chat-cancel").start()

    def memory(self) -> Any:
        """The latest MemorySample of the model process, or None when no model is loaded."""
        monitor = self._monitor
        return monitor.latest if monitor is not None else None

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop any answer, end the model process and the thread (the window is closing)."""
        self._closing = True
        if self._answering:
            self.cancel()
        self._jobs.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # stuck in a load: the process goes, the daemon thread with us
            self.client.kill()

    # --- on the engine thread -----------------------------------------------------------------

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._closing:
                continue
            try:
                job()
            except Exception:  # a bug in a job must not end the thread: later jobs still run
                log.exception("chat engine job failed")
        self._stop_monitor()
        self.client.close()
        if self._store is not None:
            self._store.close()

    def _send_cancel(self) -> None:
        # EngineClient is not thread-safe: a Stop racing the process's end (a crash, the window
        # closing) may see it half torn down. Either way there is nothing left to cancel.
        with contextlib.suppress(Exception):
            if self.client.pid is not None:
                self.client.cancel()

    def _chat_store(self) -> Any:
        if self._store is None:  # sqlite connections belong to the thread that opened them
            from app.core.chat.store import ChatStore

            self._store = ChatStore()
        return self._store

    def _load(self, spec: LoadSpec, conversation_id: int | None, chat: ChatSettings) -> None:
        from app.core.errors import DoesNotFitError
        from app.engine.chat import ChatSession
        from app.engine.monitor import MemoryMonitor
        from app.gui.workers import describe_error

        try:  # planned first: a refused plan leaves the loaded model as it was
            planned = plan_load(spec, self._profile())
        except DoesNotFitError as exc:
            self.refused.emit(str(exc), exc.hint or "")
            return
        except Exception as exc:
            self.failed.emit(*describe_error(exc), self.client.pid is None)
            return
        self._stop_monitor()
        self._session = None
        try:
            load, plan = P.Load.from_plan(planned, n_threads=self._n_threads), planned.to_record()
            session = ChatSession(self.client, self._chat_store(), load, system_prompt=chat.system_prompt,
                                  sampling=chat.sampling, conversation_id=conversation_id, plan=plan)  # fmt: skip
            loaded = session.start(on_progress=self.progress.emit)
        except Exception as exc:
            self.failed.emit(*describe_error(exc), self.client.pid is None)
            return
        self._session = session
        self._monitor = MemoryMonitor(self.client.pid or 0, interval_s=METRICS_INTERVAL_S).__enter__()
        assert session.conversation_id is not None  # start() made one if there was none
        note = session.template.describe() if session.template else ""
        name = Path(load.model_path).name
        warning = planned.risk() if planned.forced else ""
        self.loaded.emit(
            LoadedModel(name, load, loaded, session.conversation_id, planned.predicted, note, warning)
        )

    def _answer(
        self, conversation_id: int | None, chat: ChatSettings, turn: Callable[[Any], Iterator[Any]]
    ) -> None:
        self._stop.clear()  # here, on the GUI thread: a Stop pressed from now on applies to this answer
        self._jobs.put(lambda: self._run_answer(conversation_id, chat, turn))

    def _run_answer(
        self, conversation_id: int | None, chat: ChatSettings, turn: Callable[[Any], Iterator[Any]]
    ) -> None:
        from app.engine.chat import Trimmed
        from app.gui.workers import describe_error

        session = self._session
        if session is None or self.client.loaded is None:
            self.failed.emit("No model is loaded.", "Choose a model and press Load.", self.client.pid is None)
            return
        session.system_prompt, session.sampling = chat.system_prompt, chat.sampling
        done: P.Done | None = None
        cancel_sent = False
        self._answering = True
        try:
            if conversation_id is None:
                conversation_id = _new_conversation(session)
                self.conversation_created.emit(conversation_id)
            session.conversation_id = conversation_id
            for ev in turn(session):
                if self._stop.is_set() and not cancel_sent:
                    # A Stop that reached the process before this request began was cleared by it.
                    session.cancel()
                    cancel_sent = True
                if isinstance(ev, Trimmed):
                    self.trimmed.emit(ev.n_messages)
                elif isinstance(ev, P.TokenChunk):
                    self.chunk.emit(ev)
                else:
                    done = ev
        except Exception as exc:
            ended = self.client.pid is None
            if ended:
                self._stop_monitor()
                self._session = None
            self.failed.emit(*describe_error(exc), ended)
            return
        finally:
            self._answering = False
        self.answered.emit(AnswerResult(conversation_id, done))

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.__exit__(None, None, None)


def _new_conversation(session: Any) -> int:
    """A new conversation for a loaded session, stored as ``ChatSession.start`` stores its first.

    ChatSession only creates one when it loads; this belongs in it (``new_conversation()``).
    """
    load = session.load_request
    conv = session.store.create_conversation(
        title="New chat", model=load.model_path,
        plan={**session.plan, **{k: v for k, v in asdict(load).items() if k != "model_path"}},
        settings={"system_prompt": session.system_prompt, "sampling": asdict(session.sampling)},
    )  # fmt: skip
    return int(conv.id)

"""The model behind the server: one engine process, its chat template, and the queue of requests.

Requests are answered one at a time, in the order they came, by one dispatcher thread: it renders a
request's prompt, makes sure the model is loaded, and streams the engine's events to the request's
sink. The queue is bounded (:class:`QueueFull` past ``max_waiting``); a request whose client went
away is skipped, and a running one is cancelled through the engine at once (``cancel``).

The engine client may be shared with the window's chat: the client grants the model process in
the order it was asked for (:class:`app.engine.fair_lock.FairLock`), so the chat's turns and the
server's requests take turns too.

When the model process dies — killed, out of memory, a crash — the request it was answering gets
the error, and so does every request that was waiting for that process; the next request to come
loads a fresh one with the same plan.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.core.chat.template import ChatTemplate, select_template
from app.core.errors import EngineError, TailorError
from app.core.model.gguf_header import read_gguf_file
from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.errors import ProcessDied
from app.engine.profile_record import ProfileRecorder, model_name_and_quant
from app.engine.renderer import TemplateRenderer

DEFAULT_MAX_WAITING = 32  # requests waiting behind the running one before a 503 (--queue)
# Finished answers kept as one profile (issue 19): their medians, so a busy server does not write a
# row per request; the rest are kept when the server stops.
PROFILE_BATCH = 32


class QueueFull(TailorError):
    """The server already has ``max_waiting`` requests waiting."""


class ModelGone(EngineError):
    """The model process died while this request waited for it (or while it ran)."""


Sink = Callable[[object], None]  # gets TokenChunk…, then a Done or an exception; thread-safe


@dataclass
class Job:
    """One request in the queue. ``prompt`` runs on the dispatcher thread when the request's turn
    comes (it may render a template): it returns the text to complete and its sampling."""

    request_id: int
    prompt: Callable[[ServedModel], tuple[str, P.Sampling]]
    sink: Sink
    epoch: int = 0  # the model process generation it was queued for


class ServedModel:
    def __init__(self, load: P.Load, *, client: EngineClient | None = None,
                 max_waiting: int = DEFAULT_MAX_WAITING, model_id: str | None = None) -> None:  # fmt: skip
        self.load_request = load
        self.client = client if client is not None else EngineClient()
        self._owns_client = client is None
        self.max_waiting = max_waiting
        self.model_id = model_id or Path(load.model_path).name.removesuffix(".gguf")
        header = read_gguf_file(load.model_path)
        self.template: ChatTemplate = select_template(
            header.metadata, architecture=header.architecture,
            name_hint=str(header.metadata.get("general.name") or Path(load.model_path).stem))  # fmt: skip
        self.renderer = TemplateRenderer()
        name, quant = model_name_and_quant(load.model_path, header)
        self.recorder = ProfileRecorder(load, quant=quant or "unknown", model_name=name)
        self._answers: list[P.Done] = []  # finished answers not yet kept as a profile
        self.loaded: P.Loaded | None = None
        self.created = int(time.time())
        self.epoch = 0  # model process generations: +1 each time one dies under the server
        self.loads = 0  # processes this server loaded the model into (1 + reloads after deaths)
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._current: int | None = None  # the request being answered

    # --- any thread -----------------------------------------------------------------------

    def start(self, on_progress: Callable[[float], None] | None = None) -> P.Loaded:
        """Load the model now (unless this client has it loaded already) and start the dispatcher."""
        loaded = self._ensure_loaded(on_progress)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="serve-dispatch", daemon=True)
            self._thread.start()
        return loaded

    def new_request_id(self) -> int:
        return self.client.new_request_id()

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises QueueFull when ``max_waiting`` requests are waiting already."""
        with self._lock:
            if self._closed:
                raise EngineError("The server is stopping.")
            if self._waiting >= self.max_waiting:
                raise QueueFull(f"{self._waiting} requests are waiting for the model already.",
                                hint="Try again in a moment.")  # fmt: skip
            self._waiting += 1
            job.epoch = self.epoch
        self._queue.put(job)

    @property
    def waiting(self) -> int:
        """Requests queued and not started."""
        return self._waiting

    def cancel(self, request_id: int) -> None:
        """The client went away: stop its request wherever it is (from any thread, at once)."""
        self.client.cancel(request_id)

    def close(self) -> None:
        """Stop the dispatcher: the running request is cancelled, the waiting ones get an error;
        end the model process if this server started it."""
        with self._lock:
            self._closed = True
            current = self._current
        if current is not None:
            self.client.cancel(current)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._keep_answers()
        self.renderer.close()
        if self._owns_client:
            self.client.close()

    # --- the dispatcher thread ------------------------------------------------------------

    def _ensure_loaded(self, on_progress: Callable[[float], None] | None = None) -> P.Loaded:
        """The model, loaded: as it is (a shared client that has it), or into a fresh process."""
        loaded = self.client.loaded
        if loaded is None:  # not yet, or its process died
            loaded = self.client.load(self.load_request, on_progress=on_progress)
            self.loads += 1
        self.loaded = loaded
        return loaded

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:  # close(): the jobs queued before it were answered with an error above
                return
            with self._lock:
                self._waiting -= 1
                closed = self._closed
                self._current = None if closed else job.request_id
            if closed:
                job.sink(EngineError("The server is stopping."))
                continue
            try:
                self._serve(job)
            finally:
                with self._lock:
                    self._current = None

    def _serve(self, job: Job) -> None:
        rid = job.request_id
        if self.client.is_cancelled(rid):  # its client left while it waited
            job.sink(P.Done.cancelled_before_start(rid))
            return
        if job.epoch != self.epoch:
            job.sink(ModelGone("The model process ended while this request waited for it.",
                               hint="Send the request again: the next one loads the model afresh."))  # fmt: skip
            return
        try:
            self._ensure_loaded()  # it died between requests: this one loads it again
            text, sampling = job.prompt(self)
            for event in self.client.generate(text, sampling, request_id=rid):
                job.sink(event)
                if isinstance(event, P.Done):
                    self._answers.append(event)
            if len(self._answers) >= PROFILE_BATCH:
                self._keep_answers()
        except ProcessDied as died:
            self.epoch += 1
            self.loaded = None
            job.sink(ModelGone(f"The model process ended while answering: {died}", hint=died.hint))
        except Exception as exc:  # everything reaches the client as an error answer, nothing is lost
            job.sink(exc)

    def _keep_answers(self) -> None:
        """The finished answers as one profile of this plan (never stops the server)."""
        answers, self._answers = self._answers, []
        if answers and self.loaded is not None:
            self.recorder.served(self.loaded, answers)

    # --- prompts (on the dispatcher thread) ----------------------------------------------

    def render(self, messages: list[dict[str, str]], request_id: int) -> str:
        """The chat prompt for ``messages``, with the model's template; when the file's template
        fails the built-in one takes over for this and later requests, as in the window's chat."""
        loaded = self.loaded
        assert loaded is not None
        kwargs: dict[str, Any] = {"bos_token": loaded.bos_token, "eos_token": loaded.eos_token,
                                  "cancelled": lambda: self.client.is_cancelled(request_id), "request_id": request_id}  # fmt: skip
        prompt, self.template = self.renderer.with_fallback(self.template, messages, **kwargs)
        return prompt

    def chat_sampling(self, sampling: P.Sampling) -> P.Sampling:
        """``sampling`` with the template's end-of-turn strings added to its stops."""
        return replace(sampling, stop=tuple(sampling.stop) + self.template.stop_strings)

    def n_ctx(self) -> int:
        loaded = self.loaded
        return loaded.n_ctx if loaded is not None else self.load_request.n_ctx

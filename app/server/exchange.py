"""One request's events, from the dispatcher thread to the event loop, and its client's departure.

The dispatcher (:class:`~app.server.served_model.ServedModel`) calls :meth:`Exchange.sink` from its
thread; the route awaits :meth:`next`, which also returns None as soon as the client disconnects —
and then the engine request is cancelled at once, wherever it is (queued, rendering, evaluating the
prompt, writing). A stream's later disconnect is Starlette's to see: it cancels the response's
generator, whose ``finally`` calls :meth:`cancel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from app.engine import protocol as P
from app.server.served_model import Job, ServedModel


class Exchange:
    def __init__(self, served: ServedModel, request: Any) -> None:
        self.served = served
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.request_id = served.new_request_id()
        self.t0 = time.perf_counter()
        self.ttft_ms: float | None = None
        self.finished = False  # a Done or an error came: nothing to cancel
        self._gone: asyncio.Task[None] | None = None

    def sink(self, event: object) -> None:
        """From the dispatcher thread: hand ``event`` to the loop (dropped if the server stopped)."""
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def submit(self, prompt: Any) -> None:
        """Queue the request (raises QueueFull) and start watching for the client to leave."""
        self.served.submit(Job(self.request_id, prompt, self.sink))
        self._gone = asyncio.create_task(self._wait_disconnect())

    async def _wait_disconnect(self) -> None:
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                return

    async def next(self) -> object | None:
        """The next event (TokenChunk, Done or an exception); None when the client left (the
        request is then cancelled)."""
        getter = asyncio.ensure_future(self.events.get())
        waits: set[asyncio.Future[Any]] = {getter}
        if self._gone is not None:
            waits.add(self._gone)
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            self.cancel()
            return None
        event = getter.result()
        if isinstance(event, P.TokenChunk) and self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.t0) * 1000
        if isinstance(event, P.Done | BaseException):
            self.finished = True
        return event

    def stop_watching(self) -> None:
        """Before a streaming response starts: Starlette watches for the disconnect from then on."""
        if self._gone is not None:
            self._gone.cancel()
            self._gone = None

    def cancel(self) -> None:
        if not self.finished:
            self.finished = True
            self.served.cancel(self.request_id)

    def note(self, done: P.Done | None, outcome: str) -> None:
        """What the request log shows for this request (the Guard reads it from the scope)."""
        state = self.request.scope.setdefault("state", {})
        state["outcome"] = outcome
        state["ttft_ms"] = self.ttft_ms
        if done is not None:
            state["prompt_tokens"] = done.n_prompt_tokens
            state["completion_tokens"] = done.n_gen_tokens
            state["gen_tok_s"] = done.gen_tok_s

"""Render chat templates in a process of their own, with a memory limit and a deadline.

:class:`TemplateRenderer` is a :class:`app.core.chat.render.Renderer`: the chat session calls it
like the in-process ``render``. Built-in templates are ours and render here, in this process;
a model file's template goes to the renderer process (:mod:`app.engine.template_child`), started
on first use and again after it was killed. A render that passes its deadline, that the caller
cancels, or that ends the process (its memory limit) raises :class:`TemplateError` or
:class:`RequestCancelled` and costs only that process.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from app.core.chat.render import render, template_error, with_fallback
from app.core.chat.template import ChatTemplate, Message
from app.core.errors import TemplateError
from app.engine import protocol as P
from app.engine.child import ChildProcess
from app.engine.errors import ProcessDied, RequestCancelled

# A real template renders a long conversation in milliseconds; the hostile ones ran for minutes.
DEADLINE_S = float(os.environ.get("TAILORLM_TEMPLATE_TIMEOUT_S", "5"))
POLL_S = 0.01  # how often a waiting render checks for a cancel (the stop benchmark's scale)


class TemplateRenderer:
    """Renders templates; thread-safe (one render at a time), close() when done."""

    def __init__(self, *, deadline_s: float | None = None) -> None:
        self.deadline_s = DEADLINE_S if deadline_s is None else deadline_s
        self._child: ChildProcess[P.Message] | None = None
        self._lock = threading.Lock()
        self._next_id = 0
        self.restarts = 0  # how many times a render cost the process (tests, diagnostics)

    def __call__(
        self,
        template: ChatTemplate,
        messages: Sequence[Message],
        *,
        bos_token: str = "",
        eos_token: str = "",
        add_generation_prompt: bool = True,
        cancelled: Callable[[], bool] | None = None,
        request_id: int | None = None,
    ) -> str:
        """The prompt for ``messages``; raises :class:`~app.core.errors.TemplateError` (the template failed, ran past the
        deadline or out of memory) or ``RequestCancelled`` (``cancelled()`` became true)."""
        if template.source != "gguf":  # built-in: ours, reviewed, bounded by construction
            return render(template, messages, bos_token=bos_token, eos_token=eos_token,
                          add_generation_prompt=add_generation_prompt)  # fmt: skip
        with self._lock:
            self._next_id += 1
            request = P.RenderPrompt(self._next_id, template.jinja, [dict(m) for m in messages],
                                     bos_token, eos_token, add_generation_prompt)  # fmt: skip
            cause = self._render(request, cancelled, request_id)
            if isinstance(cause, str):
                raise template_error(template, cause)
            return cause.text

    def _render(self, request: P.RenderPrompt, cancelled: Callable[[], bool] | None,
                request_id: int | None) -> P.RenderedPrompt | str:  # fmt: skip
        """The answer, or why there is none (a template failure's cause)."""
        child = self._start()
        try:
            child.send(P.encode(request))
            deadline = time.monotonic() + self.deadline_s
            while True:
                if cancelled is not None and cancelled():
                    self._kill()
                    raise RequestCancelled(request_id if request_id is not None else request.request_id)
                if time.monotonic() > deadline:
                    self._kill()
                    return f"it ran for more than {self.deadline_s:g} s"
                msg = child.poll(POLL_S)
                if isinstance(msg, P.RenderedPrompt) and msg.request_id == request.request_id:
                    return msg
                if isinstance(msg, P.Failed) and msg.request_id == request.request_id:
                    return msg.message
        except ProcessDied as died:
            self._child = None
            self.restarts += 1
            death = died.death
            if death is None or "MemoryError" in "".join(death.stderr_tail):
                return "it ran out of the memory allowed for a template"
            return f"the template process ended: {death.cause}"

    @property
    def running(self) -> bool:
        """Whether the renderer process is up."""
        return self._child is not None and self._child.alive

    def warm(self) -> None:
        """Start the renderer process now (it takes ~0.2 s), e.g. while the model loads."""
        with self._lock:
            self._start()

    def _start(self) -> ChildProcess[P.Message]:
        if self._child is None or not self._child.alive:
            self._child = ChildProcess("app.engine.template_child", decode=P.decode,
                                       what="The chat template process")  # fmt: skip
        return self._child

    def _kill(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.close()
            self._child = None
            self.restarts += 1

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.close()
                self._child = None

    def with_fallback(self, template: ChatTemplate, messages: Sequence[Message],
                      **kwargs: Any) -> tuple[str, ChatTemplate]:  # fmt: skip
        """(the prompt, the template that made it): ``template``'s, or — when a file's template fails
        (an error, its deadline, its memory limit) — the built-in one's, which the caller keeps
        using from then on, as the failure's message promised."""
        try:
            return self(template, messages, **kwargs), template
        except TemplateError as err:
            fallback = with_fallback(template, err)
            if fallback is None:
                raise
            return self(fallback, messages, **kwargs), fallback

"""The template renderer process: renders chat templates from model files, and nothing else.

A chat template is Jinja written by whoever made the file. The sandbox stops it from reaching
Python's internals, but not from looping for minutes or building gigabytes of text. So it runs
here, a small process that holds no model and no conversation store, under a memory limit set on
itself before it reads a request; the app (:mod:`app.engine.renderer`) gives each render a
deadline and kills this process when it passes. A template that exceeds either costs a restart of
this process, never the window or the model.

Usage: ``python -m app.engine.template_child`` — then one :class:`~app.engine.protocol.RenderPrompt`
per line on stdin, one :class:`~app.engine.protocol.RenderedPrompt` or
:class:`~app.engine.protocol.Failed` per line on stdout, until stdin ends.
"""

from __future__ import annotations

import os
import sys

from app.core.runtime import private_stdout
from app.engine import protocol as P

# The address space this process may use. Python with Jinja loaded maps ~40 MB; the longest real
# prompt (a 1M-token context, ~4 MB of text held a few times over) needs tens more. The hostile
# templates of issue 13 reached 1.9–4.8 GB.
MEMORY_LIMIT_BYTES = int(os.environ.get("TAILORLM_TEMPLATE_MEMORY_MB", "512")) << 20


def limit_memory(limit_bytes: int) -> bool:
    """Cap this process's address space; False where the OS has no such limit (Windows)."""
    try:
        import resource
    except ImportError:  # Windows: the deadline still bounds the render
        return False
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    except (ValueError, OSError):  # already lower, or not allowed here: keep what is there
        return False
    return True


def main() -> int:
    out = private_stdout()
    limit_memory(MEMORY_LIMIT_BYTES)
    from app.core.chat.render import RenderFailed, render_text  # after the limit: Jinja counts too

    for line in sys.stdin.buffer:
        msg = P.decode(line)
        if not isinstance(msg, P.RenderPrompt):
            out.write(P.encode(P.Failed(stage="protocol", message=f"unexpected {msg.kind}")))
            continue
        try:
            text = render_text(msg.jinja, msg.messages, bos_token=msg.bos_token, eos_token=msg.eos_token,
                               add_generation_prompt=msg.add_generation_prompt)  # fmt: skip
            reply: P.Message = P.RenderedPrompt(msg.request_id, text)
        except RenderFailed as exc:
            reply = P.Failed(
                stage="render", message=exc.cause, request_id=msg.request_id, error="TemplateError"
            )
        try:
            out.write(P.encode(reply))
        except MemoryError:  # the answer itself does not fit in what is left: say so, briefly
            out.write(P.encode(P.Failed(stage="render", message="it ran out of the memory allowed for a template",
                                        request_id=msg.request_id, error="TemplateError")))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

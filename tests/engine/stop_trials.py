"""Stop trials on a loaded engine, shared by tests/engine/test_cancel.py and the benchmark
tests/bench/stop_latency.py: a long prompt no other trial shares, and Stop pressed from another
thread a moment into reading it."""

from __future__ import annotations

import threading
import time

from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.quality_eval import default_text

CHATML = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def long_prompt(engine: EngineClient, trial: int, n_tokens: int = 4000) -> str:
    """About ``n_tokens`` tokens of prose; the trial number first, so no two trials share a
    cached prefix beyond BOS."""
    text = default_text()
    body = f"Trial {trial}. " + (text + "\n\n" + text)
    n = engine.count_tokens(body)
    body = body[: int(len(body) * n_tokens / n)]
    return CHATML.format(q=f"{body}\n\nSummarise the text above.")


def stop_after(engine: EngineClient, prompt: str, delay_s: float) -> tuple[float, P.Done]:
    """Send ``prompt``, press Stop ``delay_s`` later from another thread; (seconds from the cancel
    call to the Done, the Done)."""
    rid = engine.new_request_id()
    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.perf_counter())
        engine.cancel(rid)

    timer = threading.Timer(delay_s, press)
    timer.start()
    events = list(engine.generate(prompt, P.Sampling(temperature=0, max_tokens=64), request_id=rid))
    ended = time.perf_counter()
    timer.join()
    done = events[-1]
    assert isinstance(done, P.Done) and done.request_id == rid
    return ended - pressed[0], done

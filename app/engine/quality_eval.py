"""What a quantization costs, measured here: perplexity and KL divergence against a reference.

The method of llama.cpp's ``llama-perplexity --kl-divergence`` (tools/perplexity/perplexity.cpp):
the text is cut into chunks of ``n_ctx`` tokens, each chunk starts with BOS when the vocabulary adds
one, and only the second half of a chunk is scored, so every scored token has at least
``n_ctx / 2`` tokens of context. llama-perplexity saves the reference's logits to a file and reads
them back (gigabytes for a 262k vocabulary); here both models are loaded in one process and
compared chunk by chunk (:mod:`app.engine.quality_child`).

The work runs in a child through :func:`app.engine.child.job`, so a crash or an out-of-memory kill
of llama.cpp costs only this call, and a cancel is a kill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from pathlib import Path

from app.core.errors import ModelNotFoundError, TailorError
from app.engine import protocol as P
from app.engine.child import job
from app.engine.errors import TextTooShortError, VocabularyMismatchError, from_failure
from app.engine.protocol import QualityResult
from app.engine.quality_child import MIN_TOKENS

# The result and the errors a caller catches live with the protocol and the engine's errors;
# they are offered here too, so one import serves a caller of evaluate().
__all__ = ["QualityResult", "TextTooShortError", "VocabularyMismatchError", "default_text", "evaluate"]


def default_text() -> str:
    """The built-in text: ~2,700 words (~3,600 tokens) of prose, dialogue, dates, a list, code, a recipe."""
    return resources.files("app.core.advice").joinpath("quality_text.txt").read_text(encoding="utf-8")


def evaluate(
    reference: Path,
    candidate: Path,
    text: str,
    *,
    n_ctx: int = 512,
    n_threads: int = 0,
    on_progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> QualityResult:
    """Score ``candidate`` against ``reference`` on ``text`` in a child process.

    ``on_progress`` gets the fraction of chunks done (raising in it stops the child too); setting
    ``cancel`` kills the child and raises ``Cancelled``. Raises ``VocabularyMismatchError``,
    ``TextTooShortError``, ``ModelReadError`` or, when the child dies, ``ProcessDied``.
    """
    for path in (reference, candidate):
        if not Path(path).is_file():
            raise ModelNotFoundError(f"{path} is not a file.", hint="Give the path of a .gguf model.")
    if n_ctx < MIN_TOKENS:
        raise TailorError(f"A context of {n_ctx} tokens is too small to score.", hint="Use 128 or more.")
    t0 = time.perf_counter()
    request = P.ScoreQuality(reference=str(reference), candidate=str(candidate), text=text, n_ctx=n_ctx,
                             n_threads=n_threads)  # fmt: skip
    for msg in job("app.engine.quality_child", request, result=P.QualityResult, cancel=cancel,
                   what="The llama.cpp process of the quality check", cancelled_message="The quality check was cancelled.",
                   hint="Both models are loaded at once: try smaller models or a smaller context."):  # fmt: skip
        if isinstance(msg, P.QualityProgress):
            if on_progress is not None:
                on_progress(msg.fraction)
        elif isinstance(msg, P.QualityResult):
            return replace(msg, elapsed_s=time.perf_counter() - t0)  # with the child's start
        elif isinstance(msg, P.Failed):
            raise from_failure(msg)
    raise AssertionError("unreachable: job() ends with a result, an error or the child's death")

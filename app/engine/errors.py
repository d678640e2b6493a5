"""The engine's errors, in one place. Each is a :class:`~app.core.errors.TailorError`, so the front
ends show it like any other; a child process reports one by its class name (``Failed.error``) and
:func:`from_failure` raises the same class again on the app's side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.errors import Cancelled, ContextOverflowError, EngineError, ModelReadError, TailorError

if TYPE_CHECKING:
    from app.engine.child import ChildDeath
    from app.engine.protocol import Failed


class ProcessDied(EngineError):
    """A child process ended while the app needed it. ``death`` is how it ended: computed once, when
    the process was reaped, so every caller that meets the death reports the same cause."""

    def __init__(self, message: str, *, death: ChildDeath, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.death = death


class LoadFailed(EngineError):
    """llama.cpp could not load a model (a damaged file, not enough memory); the process lives on."""


class RequestCancelled(Cancelled):
    """The request was cancelled by its id before it produced its result."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"Request {request_id} was cancelled.")
        self.request_id = request_id


class VocabularyMismatchError(TailorError):
    """The two models do not share a vocabulary, so their token distributions cannot be compared."""


class TextTooShortError(TailorError):
    """The text gives too few tokens to score."""


# What a child may report by name; anything else comes back as an EngineError.
_BY_NAME: dict[str, type[TailorError]] = {
    cls.__name__: cls
    for cls in (
        LoadFailed,
        VocabularyMismatchError,
        TextTooShortError,
        ModelReadError,
        ContextOverflowError,
        EngineError,
        TailorError,
    )
}


def from_failure(failed: Failed) -> TailorError:
    """The error a child reported in ``failed``, as the class it raised there."""
    return _BY_NAME.get(failed.error, EngineError)(failed.message, hint=failed.hint)

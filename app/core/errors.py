"""One error hierarchy for the whole app.

Each error carries a sentence for the user (``str(err)``) and, where we know one, the next step
(``err.hint``). Front ends turn them into a dialog or one line on stderr; nothing below the edges
formats them.
"""

from __future__ import annotations


class TailorError(Exception):
    """Base of every error TailorLM raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def user_message(self) -> str:
        """The message and the next step, as one or two sentences."""
        text = str(self)
        return f"{text} {self.hint}" if self.hint else text


class ModelReadError(TailorError):
    """A model file, folder or repo could not be read."""


class NotAGGUFError(ModelReadError):
    """The file does not start with the GGUF magic."""


class CorruptModelError(ModelReadError):
    """The file is a GGUF (or safetensors) but its header is damaged or truncated."""


class UnsupportedArchitectureError(ModelReadError):
    """The model's architecture is one we cannot describe."""


class MissingConfigError(ModelReadError):
    """A Hugging Face checkpoint folder without config.json."""


class ModelNotFoundError(ModelReadError):
    """No file, folder, catalog entry or repo by that name."""


class HubError(TailorError):
    """The Hugging Face Hub could not be reached or refused the request."""


class DoesNotFitError(TailorError):
    """A plan needs more memory than this machine can give; the hint names the nearest that fits."""


class EstimateError(TailorError):
    """The memory estimate cannot be made for these settings."""


class InvalidSizeError(TailorError):
    """A size such as ``16GB`` could not be parsed."""


class HardwareError(TailorError):
    """Hardware detection failed in a way the user must know about."""


class Cancelled(TailorError):
    """Long work was cancelled by the user."""


class EngineError(TailorError):
    """The llama.cpp child process failed or ended unexpectedly."""

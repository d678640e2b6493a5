"""One error hierarchy for the whole app.

Each error carries a sentence for the user (``str(err)``) and, where we know one, the next step
(``err.hint``). Front ends turn them into a dialog or one line on stderr; nothing below the edges
formats them. Every error class of ``app.core`` is defined here, grouped by the package that
raises it; private control-flow exceptions stay in the module that raises and catches them.
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


class Cancelled(TailorError):
    """Long work was cancelled by the user."""


class InvalidSizeError(TailorError):
    """A size such as ``16GB`` could not be parsed."""


# --- machine ---------------------------------------------------------------------------------


class HardwareError(TailorError):
    """Hardware detection failed in a way the user must know about."""


# --- hub -------------------------------------------------------------------------------------


class HubError(TailorError):
    """The Hugging Face Hub could not be reached or refused the request."""


class NetworkError(HubError):
    """A request failed on the way (no answer in time, a dropped or refused connection): trying
    again later may work, and a download resumes where it stopped."""


class OfflineError(NetworkError):
    """The Hub's host does not resolve or accept a connection (or ``HF_HUB_OFFLINE=1``): the
    message says so in one sentence — "You're offline — your local models still work."."""


class DownloadCorruptError(TailorError):
    """The downloaded bytes do not match the expected size or SHA-256."""


# --- model -----------------------------------------------------------------------------------


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


# --- advice ----------------------------------------------------------------------------------


class EstimateError(TailorError):
    """The memory estimate cannot be made for these settings."""


class DoesNotFitError(TailorError):
    """A plan needs more memory than this machine can give; the hint names the nearest that fits."""


class ProfileError(TailorError):
    """A measured run (a profile) is malformed, an import of them is refused, or their store cannot
    be written; the message names the entry and field at fault."""


# --- build, library, chat --------------------------------------------------------------------


class ConversionError(TailorError):
    """The checkpoint cannot be converted, or the converter failed."""


class LibraryError(TailorError):
    """The library file cannot be written, or a model cannot be removed as asked."""


class ChatStoreError(TailorError):
    """The chat history file could not be opened, read or written."""


class ChatNotFoundError(ChatStoreError):
    """A conversation or message id that is not (or no longer) in the store."""


class TemplateError(TailorError):
    """A chat template could not turn the conversation into a prompt; ``cause`` says why, briefly."""

    def __init__(self, message: str, *, cause: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


class ContextOverflowError(TailorError):
    """Even the system prompt and the latest message do not fit in the context."""


class InvalidRequestError(TailorError):
    """A request to the local OpenAI-compatible server is malformed or asks for what TailorLM cannot
    do; ``param`` names the field (OpenAI's error body carries it), ``code`` is OpenAI's, if any."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class SchemaError(InvalidRequestError):
    """A JSON Schema (a response format, a tool's parameters) that cannot be turned into a grammar;
    the message names the bad part by its JSON pointer."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# --- engine ----------------------------------------------------------------------------------


class WorkerError(TailorError):
    """A worker list that cannot be read, or a worker (``tailorlm worker``) that cannot start or be
    used: not reachable, busy, another protocol, gone mid-answer."""


class EngineError(TailorError):
    """The llama.cpp child process failed or ended unexpectedly."""

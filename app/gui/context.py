"""What the panels share: settings, the hardware profile (detected once, off the GUI thread), the
model library, the model the chat has loaded, and a few app-wide signals — so panels never import
each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QSettings, Signal

from app.gui.workers import start_worker

if TYPE_CHECKING:
    from app.engine.client import EngineClient
    from app.engine.protocol import Load

THEME_KEY = "view/theme"  # "system" | "light" | "dark" (app.gui.theme.CHOICES)
WORKERS_KEY = "machine/workers"  # "HOST:PORT,…": other machines lending memory (tailorlm worker)


@dataclass(frozen=True)
class ChatModel:
    """The model the Chat panel has loaded, handed to whoever else may use its process (the Server
    panel): the client's requests are granted in arrival order, so sharing it takes turns."""

    client: EngineClient  # the chat's model process
    load: Load  # the plan it was loaded with
    label: str  # "SmolLM2 135M Instruct · Q4_1", as the chat labels its answers


class AppContext(QObject):
    # (message, next step): shown in the window's error banner, in plain words
    error = Signal(str, str)
    # (model path, load settings dict: n_ctx, n_gpu_layers, type_k, …, "predicted": {...})
    open_chat = Signal(str, dict)
    # the hardware profile arrived (or was refreshed)
    profile_ready = Signal(object)
    # a model was added to or removed from the library
    library_changed = Signal()
    # live numbers of the model process for the status bar: tok/s, ttft_ms, rss, vram, predicted
    engine_metrics = Signal(dict)
    # ask the window to show a panel by key ("machine", "advisor", "library", "chat", …)
    show_panel = Signal(str)
    # ChatModel | None: the Chat panel loaded a model, or has none any more (unloaded, its process
    # gone, the panel closing); ``chat_model`` keeps the latest for panels built later
    chat_model_changed = Signal(object)
    # tuple[Worker, ...]: the workers were asked (Machine panel); plans now include the usable ones
    workers_ready = Signal(object)

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or QSettings()
        self._chat_model: ChatModel | None = None
        self._profile: Any = None
        self._library: Any = None
        self._detecting = False
        self._workers: tuple[Any, ...] = ()

    # --- hardware -----------------------------------------------------------------------------

    @property
    def profile(self) -> Any:
        """The MachineProfile once detected, else None (``detect()`` starts it)."""
        return self._profile

    def detect(self, *, refresh: bool = False) -> None:
        if self._detecting or (self._profile is not None and not refresh):
            if self._profile is not None:
                self.profile_ready.emit(self._profile)
            return
        self._detecting = True

        def work(report: Any, cancel: Any) -> Any:
            from app.core.machine.hardware import detect_machine

            return detect_machine(measure_bandwidth=True, reprobe=refresh)  # the probe runs in a child

        def done(profile: Any) -> None:
            self._detecting = False
            self._profile = profile
            self.profile_ready.emit(profile)

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self._detecting = False
            self.error.emit(msg, hint)

        start_worker(work, owner=self, on_return=done, on_error=failed, name="detect")

    # --- workers: other machines lending memory ------------------------------------------------

    @property
    def workers_text(self) -> str:
        return str(self.settings.value(WORKERS_KEY, "") or "")

    @property
    def workers(self) -> tuple[Any, ...]:
        """The workers as they last answered (``check_workers``); plans use the usable ones."""
        return self._workers

    def check_workers(self, text: str) -> bool:
        """Remember ``text`` ("HOST:PORT,…"), ask each worker off the GUI thread, then tell
        ``workers_ready``; a list that does not parse is an error, and changes nothing."""
        from app.core.machine.workers import parse_endpoints

        try:
            endpoints = parse_endpoints(text)
        except Exception as e:  # WorkerError: what is wrong with the list, in words
            self.error.emit(str(e), getattr(e, "hint", None) or "Write HOST:PORT, separated by commas.")
            return False
        self.settings.setValue(WORKERS_KEY, text.strip())

        def work(report: Any, cancel: Any) -> Any:
            from app.core.machine.workers import probe_workers

            return probe_workers(endpoints)

        def done(workers: Any) -> None:
            self._workers = tuple(workers)
            self.workers_ready.emit(self._workers)

        start_worker(
            work, owner=self, on_return=done, on_error=lambda m, h, c: self.error.emit(m, h), name="workers"
        )

    # --- the chat's model ----------------------------------------------------------------------

    @property
    def chat_model(self) -> ChatModel | None:
        """The model the Chat panel has loaded now, or None."""
        return self._chat_model

    def set_chat_model(self, model: ChatModel | None) -> None:
        """What the Chat panel calls when its model is ready or gone; tells ``chat_model_changed``."""
        if model is self._chat_model:
            return
        self._chat_model = model
        self.chat_model_changed.emit(model)

    # --- light or dark ------------------------------------------------------------------------

    @property
    def theme(self) -> str:
        """The user's choice of colours: "system" (follow it), "light" or "dark"."""
        from app.gui.theme import CHOICES

        value = str(self.settings.value(THEME_KEY, "system"))
        return value if value in CHOICES else "system"

    def set_theme(self, choice: str) -> None:
        """Use ``choice`` for the whole app now, and remember it."""
        from app.gui.theme import apply_theme

        self.settings.setValue(THEME_KEY, choice)
        apply_theme(choice)

    # --- library ------------------------------------------------------------------------------

    @property
    def library(self) -> Any:
        if self._library is None:
            from app.core.library.registry import Library

            self._library = Library()
        return self._library

"""The Server panel's one server: started for the chat's model, stopped, started again for another,
and stopped for good when the window closes. Qt-free; the panel calls it on its worker lane, so
its calls run one after another in the order the user made them.

Only calls into :mod:`app.server`: the model behind the server shares the chat's engine client (its
requests are granted in arrival order, so chat turns and HTTP requests take turns), and stopping
the server never ends that process — the chat owns it.
"""

from __future__ import annotations

import threading

from app.core.errors import Cancelled
from app.gui.context import ChatModel
from app.server.run import RunningServer, start_in_thread
from app.server.served_model import ServedModel


class ServerControl:
    """At most one running server; any thread (the lock keeps ``close`` safe against a start)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: RunningServer | None = None
        self._closed = False

    @property
    def running(self) -> RunningServer | None:
        return self._running

    def start(self, model: ChatModel, *, host: str, port: int, api_key: str | None) -> RunningServer:
        """Serve ``model`` at ``host``:``port`` (0: any free port), stopping the server before it, if
        any. Blocks about 0.1 s; raises ServerError for a busy port or a public address without a key."""
        self.stop()
        served = ServedModel(model.load, client=model.client)
        try:
            served.start()  # adopts the chat's loaded model (loads it only if its process died)
            running = start_in_thread(served, host=host, port=port, api_key=api_key)
        except BaseException:
            served.close()
            raise
        with self._lock:
            closed = self._closed
            if not closed:
                self._running = running
        if closed:  # the window closed while it started: nobody would stop it
            running.stop()
            raise Cancelled("The window is closing.")
        return running

    def stop(self) -> None:
        """Stop serving (blocks until the port is free, at most ~10 s for requests running)."""
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            running.stop()

    def close(self) -> None:
        """Stop serving and refuse any later start (the window is closing)."""
        with self._lock:
            self._closed = True
        self.stop()

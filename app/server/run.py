"""Starting and stopping the server: the address rules, the socket, and uvicorn on a thread.

Binding anywhere but a loopback address puts the model on the network, so it needs an API key —
the server refuses to start without one and says so. The socket is bound here, before uvicorn
runs, so a port in use is a clear error at once (uvicorn would log it and exit the process).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from app.core.errors import TailorError
from app.server.defaults import API_KEY_ENV as API_KEY_ENV
from app.server.defaults import DEFAULT_HOST as DEFAULT_HOST
from app.server.defaults import DEFAULT_PORT as DEFAULT_PORT
from app.server.http_app import create_app
from app.server.served_model import ServedModel
from app.server.stats import ServerStats


class ServerError(TailorError):
    """The server could not start (an address in use, a public address without a key)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(host: str, api_key: str | None) -> None:
    """Refuse a non-loopback address without a key (raises ServerError)."""
    if not is_loopback(host) and not api_key:
        raise ServerError(
            f"Serving on {host} lets other machines use the model, so it needs an API key.",
            hint=f"Give one with --api-key KEY (or the {API_KEY_ENV} environment variable), or serve on 127.0.0.1.",
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ServerError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}.",
                          hint="Another program may use that port: choose another with --port.") from None  # fmt: skip
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningServer:
    """A server running on its own thread (the window's switch, tests); ``stop()`` ends it."""

    url: str  # "http://127.0.0.1:8080/v1"
    served: ServedModel
    stats: ServerStats
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self.served.close()


def make_server(served: ServedModel, sock: socket.socket, *, stats: ServerStats, api_key: str | None,
                cors_origins: tuple[str, ...] = ()) -> Any:  # fmt: skip
    import uvicorn

    host = sock.getsockname()[0]
    app = create_app(
        served, stats=stats, api_key=api_key, loopback_only=is_loopback(host), cors_origins=cors_origins
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5,
                            server_header=False)  # fmt: skip
    return uvicorn.Server(config)


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def start_in_thread(served: ServedModel, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                    api_key: str | None = None, cors_origins: tuple[str, ...] = (),
                    stats: ServerStats | None = None) -> RunningServer:  # fmt: skip
    """Start serving ``served`` (already started) on a thread; returns once it accepts connections."""
    check_address(host, api_key)
    sock = bind(host, port)
    stats = stats or ServerStats()
    server = make_server(served, sock, stats=stats, api_key=api_key, cors_origins=cors_origins)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="serve-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise ServerError("The server did not start.")
    return RunningServer(url_of(sock), served, stats, server, thread)

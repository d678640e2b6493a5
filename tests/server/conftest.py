"""A real server on a real model for the server's tests: SmolLM2-135M, one CPU thread, a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.engine import protocol as P
from app.server.run import RunningServer, start_in_thread
from app.server.served_model import ServedModel


def start_server(model: Path, *, n_ctx: int = 2048, **kwargs: object) -> RunningServer:
    """A served model on 127.0.0.1 at a free port (``kwargs``: ServedModel's, then start_in_thread's)."""
    max_waiting = kwargs.pop("max_waiting", 32)
    served = ServedModel(
        P.Load(model_path=str(model), n_ctx=n_ctx, n_threads=1), max_waiting=int(max_waiting)
    )  # type: ignore[call-overload]
    served.start()
    try:
        return start_in_thread(served, port=0, **kwargs)  # type: ignore[arg-type]
    except BaseException:
        served.close()
        raise


@pytest.fixture(scope="module")
def server(smollm2_path: Path) -> Iterator[RunningServer]:
    running = start_server(smollm2_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> object:
    from openai import OpenAI

    return OpenAI(base_url=server.url, api_key="not-needed", max_retries=0, timeout=120)

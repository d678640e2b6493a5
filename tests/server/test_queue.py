"""One model, many clients: a bounded queue in arrival order, a client that leaves stops its work,
and a model process that dies fails its waiting clients and comes back for the next (issue 18)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import start_server
from tests.server.raw_http import api_path, connect, post

pytestmark = pytest.mark.slow

CHAT = "/chat/completions"
LONG = {"model": "m", "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": 400, "temperature": 0.8, "seed": 1}  # fmt: skip


def _open_stream(url: str, body: dict[str, Any]) -> Any:
    """A streaming request whose response is open: (connection, response)."""
    conn = connect(url)
    conn.request("POST", api_path(url, CHAT), body=json.dumps({**body, "stream": True}),
                 headers={"content-type": "application/json"})  # fmt: skip
    return conn, conn.getresponse()


def _events(resp: Any) -> list[Any]:
    out = []
    for line in resp:
        line = line.strip()
        if line.startswith(b"data: "):
            data = line[6:]
            out.append(data if data == b"[DONE]" else json.loads(data))
    return out


def _wait(predicate: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def small_queue(smollm2_path: Path) -> Any:
    running = start_server(smollm2_path, max_waiting=2)
    yield running
    running.stop()


def test_a_full_queue_answers_503_with_retry_after_and_order_is_kept(small_queue: Any) -> None:
    url = small_queue.url
    conn, resp = _open_stream(url, LONG)  # running
    resp.readline()  # it has started writing
    finished: list[int] = []

    def waiter(i: int) -> None:
        body = {**LONG, "max_tokens": 3, "messages": [{"role": "user", "content": f"Say {i}."}]}
        assert post(url, api_path(url, CHAT), body).status == 200
        finished.append(i)

    threads = []
    for i in range(2):  # fill the two waiting places, in order
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        _wait(lambda i=i: small_queue.served.waiting == i + 1)
    full = post(url, api_path(url, CHAT), {**LONG, "max_tokens": 2})
    assert full.status == 503 and full.headers["retry-after"] == "1"
    assert full.json()["error"]["code"] == "queue_full"
    conn.close()  # the running answer's client leaves: the waiting ones go next, in their order
    for t in threads:
        t.join(120)
    assert finished == [0, 1]


def test_a_client_that_leaves_cancels_its_generation_at_once(server: Any) -> None:
    url, served = server.url, server.served
    conn, resp = _open_stream(url, LONG)
    for _ in range(3):
        resp.readline()
    t0 = time.monotonic()
    conn.close()
    _wait(lambda: any(r.outcome == "cancelled (client left)" for r in server.stats.recent()), 30)
    quick = post(url, api_path(url, CHAT), {**LONG, "max_tokens": 2})
    assert quick.status == 200
    assert time.monotonic() - t0 < 15  # not after the 400 tokens the first asked for
    # a whole (non-streamed) request whose client gives up is cancelled too
    slow = connect(url, timeout=1.0)
    slow.request(
        "POST", api_path(url, CHAT), body=json.dumps(LONG), headers={"content-type": "application/json"}
    )
    with pytest.raises(TimeoutError):
        slow.getresponse()
    slow.close()
    _wait(lambda: sum(r.outcome == "cancelled (client left)" for r in server.stats.recent()) >= 2, 30)
    assert served.waiting == 0


def test_killing_the_model_process_fails_every_waiting_client_and_the_next_request_reloads(
    smollm2_path: Path,
) -> None:
    running = start_server(smollm2_path, max_waiting=8)
    try:
        url, served = running.url, running.served
        pid = served.client.pid
        conn, resp = _open_stream(url, LONG)
        resp.readline()
        results: list[int] = []
        waiters = [threading.Thread(target=lambda: results.append(post(url, api_path(url, CHAT), {**LONG, "max_tokens": 2}).status))
                   for _ in range(3)]  # fmt: skip
        for w in waiters:
            w.start()
        _wait(lambda: served.waiting == 3)
        served.client.kill()
        events = _events(resp)
        conn.close()
        assert events and "error" in events[-1 if events[-1] != b"[DONE]" else -2]
        for w in waiters:
            w.join(60)
        assert results == [503, 503, 503]
        after = post(url, api_path(url, CHAT), {**LONG, "max_tokens": 2})
        assert after.status == 200 and served.client.pid not in (None, pid) and served.loads == 2
    finally:
        running.stop()

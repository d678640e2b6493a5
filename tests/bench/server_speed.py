"""What the HTTP layer costs, and whether many clients are served right (issue 18).

1. **One client**: the same request (rendered prompt, greedy, 256 tokens) through the engine client
   directly and through ``POST /v1/chat/completions`` (streamed, read with ``http.client``),
   interleaved round by round on one model process. Both sides measure alike, in this process:
   time to first token (request sent → first text) and generation speed (tokens after the first ÷
   first → last). Reported: server ÷ engine tok/s and the TTFT overhead (server − engine), medians
   and spread over the rounds.
2. **Many clients**: 16 threads × 100 requests each (max_tokens 8, each client its own question),
   all at once: errors, answers lost (a request without its answer), per-client wall time (the
   fairness: slowest ÷ fastest client, and Jain's index), the app's and the model process's RSS
   at the start, once warm and at the end; the clients run in a process of their own.

``python tests/bench/server_speed.py [--rounds 11] [--tokens 256] [--clients 16] [--requests 100] [--write]``
prints JSON (and writes tests/bench/results/server_speed.json with --write).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.chat.openai_request import Options  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.server.completions import sampling_for  # noqa: E402
from app.server.run import start_in_thread  # noqa: E402
from app.server.served_model import ServedModel  # noqa: E402
from tests import models  # noqa: E402
from tests.bench.engine_speed import machine, spread  # noqa: E402

QUESTION = [{"role": "user", "content": "Write a short poem about the sea."}]


def _engine_once(served: ServedModel, n_tokens: int) -> tuple[float, float, int]:
    """(ttft_ms, gen tok/s, tokens) straight through the engine client."""
    t0 = time.perf_counter()
    prompt = served.render(QUESTION, served.new_request_id())
    sampling = served.chat_sampling(
        sampling_for(Options(temperature=0.0, max_tokens=n_tokens), max_tokens=n_tokens)
    )
    first = last = None
    n = 0
    for ev in served.client.generate(prompt, sampling):
        if isinstance(ev, P.TokenChunk):
            now = time.perf_counter()
            first = now if first is None else first
            last, n = now, n + ev.n_tokens
    assert first is not None and last is not None
    return (first - t0) * 1000, (n - 1) / (last - first) if last > first else float("nan"), n


def _server_once(url: str, n_tokens: int) -> tuple[float, float, int]:
    """The same through HTTP: a streamed request read with the standard library, so the client's
    own parsing (the openai package validates every chunk with pydantic) does not take CPU from a
    2-core machine's model threads; the many-clients part uses the openai client."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    body = json.dumps({"model": "m", "messages": QUESTION, "temperature": 0, "max_tokens": n_tokens, "stream": True,
                       "stream_options": {"include_usage": True}})  # fmt: skip
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    t0 = time.perf_counter()
    conn.request(
        "POST", parts.path + "/chat/completions", body=body, headers={"content-type": "application/json"}
    )
    resp = conn.getresponse()
    first = last = None
    n = 0
    for line in resp:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            now = time.perf_counter()
            first = now if first is None else first
            last = now
        if chunk.get("usage"):
            n = chunk["usage"]["completion_tokens"]
    conn.close()
    assert first is not None and last is not None
    return (first - t0) * 1000, (n - 1) / (last - first) if last > first else float("nan"), n


def one_client(served: ServedModel, url: str, rounds: int, n_tokens: int) -> dict[str, Any]:
    _server_once(url, n_tokens)  # warm: the prompt in the KV cache, the template process up
    _engine_once(served, n_tokens)
    rows = []
    for i in range(rounds):
        pair = {}
        order = ("engine", "server") if i % 2 == 0 else ("server", "engine")
        for side in order:
            fn = (
                (lambda: _engine_once(served, n_tokens))
                if side == "engine"
                else (lambda: _server_once(url, n_tokens))
            )
            ttft, tok_s, n = fn()
            pair[side] = {"ttft_ms": round(ttft, 3), "tok_s": round(tok_s, 2), "tokens": n}
        rows.append(pair)
    ratio = [r["server"]["tok_s"] / r["engine"]["tok_s"] for r in rows]
    overhead = [r["server"]["ttft_ms"] - r["engine"]["ttft_ms"] for r in rows]
    return {"rounds": rows, "tok_s_ratio": spread(ratio), "ttft_overhead_ms": spread(overhead),
            "engine_tok_s": spread([r["engine"]["tok_s"] for r in rows]),
            "server_tok_s": spread([r["server"]["tok_s"] for r in rows])}  # fmt: skip


def _clients(url: str, n_clients: int, n_requests: int, out: Any) -> None:
    """The clients, in a process of their own (so the app's memory is the server's alone): one
    thread and one ``openai`` client each, requests one after another."""
    from openai import OpenAI

    errors: list[str] = []
    answered = [0] * n_clients
    wall = [0.0] * n_clients

    def client_loop(i: int) -> None:
        c = OpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
        t0 = time.perf_counter()
        for j in range(n_requests):
            try:
                answer = c.chat.completions.create(model="m", max_tokens=8, temperature=0.7, seed=j, messages=[
                    {"role": "user", "content": f"Client {i}, question {j}: name a fruit."}])  # fmt: skip
                if answer.choices and answer.usage.completion_tokens > 0:
                    answered[i] += 1
                else:
                    errors.append(f"client {i} request {j}: an empty answer")
            except Exception as exc:  # counted: the benchmark's point is that there are none
                errors.append(f"client {i} request {j}: {exc.__class__.__name__}: {exc}")
        wall[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"errors": errors, "answered": answered, "wall": wall})


def many_clients(running: Any, n_clients: int, n_requests: int) -> dict[str, Any]:
    """All clients at once; the app's and the model process's RSS at the start, once a tenth of the
    requests are answered (warm: every client's connection pool and the template process are up)
    and at the end — flat means the last two agree."""
    import multiprocessing

    app, model = psutil.Process(), psutil.Process(running.served.client.pid)
    total0 = running.stats.rates().total_requests
    n = n_clients * n_requests
    rss = {"start": (app.memory_info().rss, model.memory_info().rss)}
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_clients, args=(running.url, n_clients, n_requests, queue))
    proc.start()
    while proc.is_alive() and queue.empty():
        if "warm" not in rss and running.stats.rates().total_requests - total0 >= n // 10:
            rss["warm"] = (app.memory_info().rss, model.memory_info().rss)
        time.sleep(0.2)
    result = queue.get()
    proc.join()
    elapsed = time.perf_counter() - t0
    rss["end"] = (app.memory_info().rss, model.memory_info().rss)
    wall, answered, errors = result["wall"], sum(result["answered"]), result["errors"]
    jain = sum(wall) ** 2 / (len(wall) * sum(w * w for w in wall))
    mib = {k: [round(v[0] / 2**20, 1), round(v[1] / 2**20, 1)] for k, v in rss.items()}
    return {
        "clients": n_clients, "requests_per_client": n_requests, "errors": len(errors), "error_samples": errors[:5],
        "lost": n - answered - len(errors), "answered": answered,
        "elapsed_s": round(elapsed, 2), "requests_per_s": round(answered / elapsed, 2),
        "client_wall_s": spread(wall), "slowest_over_fastest": round(max(wall) / min(wall), 3),
        "jain_fairness": round(jain, 4), "rss_mib_app_model": mib,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--threads", type=int, default=0, help="model threads (0: physical cores)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    model = models.smollm2_path()
    served = ServedModel(P.Load(model_path=str(model), n_ctx=4096, n_threads=args.threads), max_waiting=64)
    served.start()
    running = start_in_thread(served, port=0)
    try:
        result = {
            "model": model.name, "machine": machine(), "threads": args.threads or psutil.cpu_count(logical=False),
            "tokens": args.tokens, "one_client": one_client(served, running.url, args.rounds, args.tokens),
            "many_clients": many_clients(running, args.clients, args.requests),
            "date": time.strftime("%Y-%m-%d"),
        }  # fmt: skip
    finally:
        running.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.write:
        (ROOT / "tests" / "bench" / "results" / "server_speed.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

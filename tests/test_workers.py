"""Pooling over workers (`tailorlm worker`, llama.cpp's RPC backend), proved on this machine: two
worker processes with their own memory caps plus the model process, on the real test models."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.advice.chat_plan import ChatOverrides, plan_chat
from app.core.advice.estimate import estimate
from app.core.advice.placement import layer_devices
from app.core.advice.pooling import with_workers
from app.core.advice.recommend import Budget
from app.core.advice.rpc_link import link_cost
from app.core.advice.run_settings import RunSettings
from app.core.errors import WorkerError
from app.core.machine.workers import Endpoint, parse_endpoints, probe_worker, probe_workers
from app.core.model.source import model_from_gguf
from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.errors import ProcessDied
from tests.byte_relay import ByteRelay

ROOT = Path(__file__).resolve().parents[1]


def _has_rpc() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_rpc())


# CI builds llama-cpp-python with GGML_RPC=on (scripts/venv.sh); elsewhere these tests need it too.
pytestmark = pytest.mark.skipif(not _has_rpc() and not os.environ.get("TAILORLM_REQUIRE_LLAMA_TOOLS"),
                                reason="this llama-cpp-python was built without GGML_RPC")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProc:
    def __init__(self, mem: int) -> None:
        self.port = _free_port()
        self.mem = mem
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "worker", "--port", str(self.port), "--mem", str(mem), "--threads", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.endpoint = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while not probe_worker(Endpoint("127.0.0.1", self.port), timeout_s=1).usable:
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()


def _measured_by_device(buffers: dict[str, int], plan_settings: RunSettings) -> dict[str, int]:
    """llama.cpp's buffers per device of the plan ("GPU0" = the first worker …, "CPU")."""
    out: dict[str, int] = {}
    for key, n in buffers.items():
        kind, _, buf = key.partition(":")
        if kind == "output" or buf.startswith("CPU"):
            continue
        ep = buf[buf.index("[") + 1 : buf.index("]")]
        dev = f"GPU{plan_settings.rpc_devices.index(ep)}"
        out[dev] = out.get(dev, 0) + n
    return out


@pytest.fixture()
def two_workers(smollm2_path: Path) -> Iterator[tuple[WorkerProc, WorkerProc, Budget, object]]:
    """SmolLM2 at 1,024 tokens: this machine's budget three quarters of what it needs alone, each
    worker capped at 60 % of what holding every layer would take — so no one of the three fits it."""
    model = model_from_gguf(smollm2_path)
    alone = estimate(model, None, RunSettings(n_ctx=1024))
    one_worker = estimate(model, None, RunSettings(n_ctx=1024, n_gpu_layers=model.n_layer + 1,
                                                   rpc_devices=("w",), gpu_split=(1.0,)))  # fmt: skip
    cap = int(one_worker.device("GPU0").total_bytes * 0.6)
    workers = [WorkerProc(cap), WorkerProc(cap)]
    budget = Budget(ram_bytes=int(alone.ram_bytes * 0.75), ram_bandwidth_bytes_s=20e9, cpu_isa=("AVX2",))
    try:
        yield workers[0], workers[1], budget, model
    finally:
        for w in workers:
            w.stop()


def test_a_model_no_one_device_holds_loads_across_two_workers_and_answers(two_workers) -> None:
    w1, w2, budget, model = two_workers
    assert plan_chat(model, budget, ChatOverrides(n_ctx=1024)).fits is False  # not here alone
    relays = [ByteRelay(w1.port), ByteRelay(w2.port)]  # what crosses the "network", counted
    pooled = with_workers(budget, probe_workers(parse_endpoints(",".join(r.endpoint for r in relays))))
    assert [g.backend for g in pooled.gpus] == ["rpc", "rpc"]
    planned = plan_chat(model, pooled, ChatOverrides(n_ctx=1024)).check()
    est = planned.plan.estimate
    s = est.settings
    assert s.rpc_devices == tuple(r.endpoint for r in relays)
    on = {d.device: d for d in est.devices}
    assert on["CPU"].n_layers and on["GPU0"].n_layers and on["GPU1"].n_layers  # all three hold layers
    with EngineClient() as engine:
        loaded = engine.load(P.Load.from_plan(planned))
        n, after_first, done, text = 0, 0, None, []
        for ev in engine.generate("<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
                                  P.Sampling(max_tokens=24, temperature=0.0, ignore_eos=True), flush_ms=0):  # fmt: skip
            if isinstance(ev, P.TokenChunk):
                text.append(ev.text)
                n += ev.n_tokens
                if n == 1:  # the prompt is read: from here on, one token at a time
                    after_first = sum(r.total for r in relays)
            if isinstance(ev, P.Done):
                done = ev
        per_token = (sum(r.total for r in relays) - after_first) / (n - 1)
    assert done is not None and done.n_gen_tokens == 24 and "".join(text).strip()
    measured = _measured_by_device(dict(loaded.buffers), s)
    for dev in ("GPU0", "GPU1"):
        predicted = on[dev].total_bytes
        assert abs(predicted - measured[dev]) <= 0.05 * measured[dev], (dev, predicted, measured[dev])
        assert measured[dev] <= w1.mem  # within the worker's cap, as planned
    # this machine's share: its KV cache and compute buffer as llama.cpp allocated them
    here = sum(n for k, n in loaded.buffers.items() if k in ("kv:CPU", "compute:CPU"))
    predicted_here = on["CPU"].kv_bytes + on["CPU"].compute_bytes
    assert abs(predicted_here - here) <= 0.05 * here, (predicted_here, here)
    # the network per generated token, predicted (at this depth: the prompt and the answer so far)
    # against what the relays counted; the output matmul stays here, so no logits cross
    assert s.output_here
    depth = done.n_prompt_tokens + 12
    predicted = link_cost(model, s, layer_devices(model.n_layer, s), depth, {}).bytes_per_token
    assert abs(per_token - predicted) <= 0.02 * predicted, (per_token, predicted)
    assert per_token < model.n_vocab * 4  # less than the logits alone would be


def test_a_worker_killed_mid_answer_is_a_clear_error_and_the_next_plan_leaves_it_out(two_workers) -> None:
    w1, w2, budget, model = two_workers
    endpoints = parse_endpoints(f"{w1.endpoint},{w2.endpoint}")
    planned = plan_chat(
        model, with_workers(budget, probe_workers(endpoints)), ChatOverrides(n_ctx=1024)
    ).check()
    with EngineClient() as engine:
        engine.load(P.Load.from_plan(planned))
        got: list[object] = []
        killer = threading.Timer(0.5, lambda: os.kill(w2.proc.pid, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(ProcessDied) as err:
            for ev in engine.generate("<|im_start|>user\nCount to a thousand.<|im_end|>\n<|im_start|>assistant\n",
                                      P.Sampling(max_tokens=100_000, temperature=0.0, ignore_eos=True)):  # fmt: skip
                got.append(ev)
        killer.join()
        assert time.monotonic() - t0 < 30  # no hang
    message = str(err.value) + " " + (err.value.hint or "")
    assert "worker" in message and w2.endpoint in message, message
    # the next plan: the dead worker is reported and left out; the live one still lends its memory
    again = probe_workers(endpoints)
    assert [w.usable for w in again] == [True, False]
    replanned = with_workers(budget, again)
    assert [g.endpoint for g in replanned.gpus] == [w1.endpoint]
    assert any(w2.endpoint in n for n in replanned.notes)


def test_a_load_naming_a_dead_worker_fails_cleanly_and_the_process_lives(
    two_workers, smollm2_path: Path
) -> None:
    w1, w2, _, _ = two_workers
    w2.stop()
    with EngineClient() as engine:
        with pytest.raises(Exception) as err:
            engine.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_gpu_layers=31,
                               rpc_devices=(w1.endpoint, w2.endpoint), tensor_split=(1.0, 1.0)))  # fmt: skip
        assert "not reachable" in str(err.value) and w2.endpoint in str(err.value)
        loaded = engine.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_gpu_layers=10,
                                    rpc_devices=(w1.endpoint,), tensor_split=(1.0,)))  # fmt: skip
        assert any(w1.endpoint in k for k in loaded.buffers)


def test_worker_endpoints_parse_and_reject_nonsense() -> None:
    assert [str(e) for e in parse_endpoints("a:1, b ,[::1]:7,a:1")] == ["a:1", "b:50052", "[::1]:7"]
    for bad in ("a:b", "a:0", "::1:5", "[::1", ":5"):
        with pytest.raises(WorkerError):
            parse_endpoints(bad)


def test_a_port_that_is_not_a_worker_is_reported_not_trusted() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def answer_garbage() -> None:
        conn, _ = srv.accept()
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    t = threading.Thread(target=answer_garbage, daemon=True)
    t.start()
    w = probe_worker(Endpoint("127.0.0.1", port), timeout_s=2)
    srv.close()
    assert not w.usable and "not a llama.cpp RPC server" in w.error


def test_the_worker_refuses_to_listen_beyond_loopback_without_the_flag() -> None:
    r = subprocess.run([sys.executable, "-m", "app", "worker", "--host", "0.0.0.0", "--port", str(_free_port())],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "no authentication" in r.stderr and "--allow-network" in r.stderr


def test_hw_and_advise_plan_over_workers_from_the_command_line(two_workers, smollm2_path: Path) -> None:
    import json

    w1, w2, budget, _ = two_workers
    dead = f"127.0.0.1:{_free_port()}"
    run = [sys.executable, "-m", "app"]
    hw = subprocess.run([*run, "hw", "--json", "--no-bandwidth", "--workers", f"{w1.endpoint},{dead}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    listed = {w["endpoint"]: w for w in json.loads(hw.stdout)["workers"]}
    assert listed[w1.endpoint]["usable"] and listed[w1.endpoint]["devices"][0]["total_bytes"] == w1.mem
    assert not listed[dead]["usable"] and "not reachable" in listed[dead]["error"]
    adv = subprocess.run([*run, "advise", str(smollm2_path), "--json", "--no-bandwidth", "--ctx", "1024",
                          "--reserve", "0", "--ram", str(int(budget.ram_bytes / 0.75)), "--workers", f"{w1.endpoint},{w2.endpoint}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    out = json.loads(adv.stdout)  # --ram is the total; the OS keeps a quarter of a small one
    rec = out["recommended"]
    assert rec["rpc_devices"] == [w1.endpoint, w2.endpoint] and rec["link_bytes_per_token"] > 0
    assert any(b["device"] == "GPU0" and b["n_layers"] for b in rec["breakdown"])
    assert any(line.startswith("Pooled:") for line in out["pooling"])


def test_the_worker_says_what_it_lends_and_refuses_what_passes_its_cap(smollm2_path: Path) -> None:
    from app.engine.errors import LoadFailed

    w = WorkerProc(40 * 2**20)  # less than SmolLM2's layers need
    try:
        assert w.proc.stdout is not None
        first = w.proc.stdout.readline()
        assert first.startswith(
            f"TailorLM worker: lending CPU (up to 0.04 GiB, 1 threads) at {w.endpoint}"
        ), first
        with EngineClient() as engine, pytest.raises(LoadFailed) as err:
            engine.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_gpu_layers=31,
                               rpc_devices=(w.endpoint,), tensor_split=(1.0,)))  # fmt: skip
        assert f"[{w.endpoint}]" in str(err.value)  # llama.cpp names the worker's buffer that did not fit
        w.proc.kill()
        assert "worker: refused a" in w.proc.stdout.read()
    finally:
        w.stop()

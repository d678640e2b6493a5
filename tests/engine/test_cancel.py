"""Cancels name their request, on the real model (SmolLM2): a Stop is never lost, whether it comes
before the request, during a long prompt or while the answer streams, and a death is reported
with its real cause however many threads meet it. Timings are medians of a few trials: the test
machine has two cores shared with other work."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import EngineError
from app.engine import protocol as P
from app.engine.child import ChildProcess
from app.engine.client import EngineClient
from app.engine.errors import RequestCancelled
from tests.engine.stop_trials import CHATML, long_prompt, stop_after

STOP_BOUND_S = 0.050  # issue 12: Stop pressed 100 ms into a 4k-token prompt ends it within 50 ms


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[EngineClient]:
    with EngineClient() as client:
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=4608, n_threads=2))
        yield client


def test_stop_100_ms_into_a_4k_token_prompt_ends_it_within_50_ms(engine: EngineClient) -> None:
    latencies = []
    for trial in range(5):  # measured: median 16 ms, p90 26 ms (tests/bench/results/stop_latency.json)
        prompt = long_prompt(engine, trial)
        latency, done = stop_after(engine, prompt, 0.100)
        assert done.stop_reason == "cancelled" and done.n_gen_tokens == 0 and done.ttft_ms is None
        assert done.n_prompt_tokens is not None and 3500 <= done.n_prompt_tokens <= 4500
        assert done.n_prompt_evaluated < done.n_prompt_tokens  # it stopped inside the prompt
        latencies.append(latency)
    assert statistics.median(latencies) < STOP_BOUND_S, latencies
    # Inside a batch, not only between batches: on this machine one 512-token batch takes longer
    # than 100 ms + the bound; the abort callback is what stopped it mid-batch.
    t0 = time.perf_counter()
    events = list(
        engine.generate(long_prompt(engine, 99, n_tokens=512), P.Sampling(temperature=0, max_tokens=1))
    )
    done = events[-1]
    assert isinstance(done, P.Done) and done.prompt_tok_s
    batch_s = 512 / done.prompt_tok_s
    if batch_s > 0.1 + 2 * STOP_BOUND_S:
        assert max(latencies) < batch_s / 2, (latencies, batch_s, time.perf_counter() - t0)


def test_a_cancel_before_its_request_wins_without_decoding(engine: EngineClient) -> None:
    rid = engine.new_request_id()
    engine.cancel(rid)
    t0 = time.perf_counter()
    events = list(engine.generate(CHATML.format(q="Hello"), P.Sampling(max_tokens=32), request_id=rid))
    assert time.perf_counter() - t0 < 0.01  # answered here: nothing was sent to the model process
    assert events == [P.Done.cancelled_before_start(rid)]
    with pytest.raises(RequestCancelled):
        engine.count_tokens("Hello", request_id=rid)
    # other requests are not touched by it
    after = list(engine.generate(CHATML.format(q="Hello"), P.Sampling(temperature=0, max_tokens=4)))
    assert isinstance(after[-1], P.Done) and after[-1].stop_reason != "cancelled"


def test_the_model_process_remembers_a_cancel_that_overtakes_its_request(smollm2_path: Path) -> None:
    """Spoken to directly: Cancel(7) arrives before Generate(7) and Tokenize(7); both end
    cancelled without work, and request 8 right behind them runs to its end."""
    child: ChildProcess[P.Message] = ChildProcess(
        "app.engine.worker", decode=P.decode, what="The model process"
    )
    try:
        child.send(P.encode(P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=2)))
        while not isinstance(child.poll(60), P.Loaded):
            pass
        for msg in (P.Cancel(request_id=7), P.Generate(request_id=7, prompt=CHATML.format(q="Hi")),
                    P.Tokenize(request_id=7, text="Hi"),
                    P.Generate(request_id=8, prompt=CHATML.format(q="Hi"), sampling=P.Sampling(max_tokens=3,
                                                                                             ignore_eos=True))):  # fmt: skip
            child.send(P.encode(msg))
        answers: list[P.Message] = []
        while not (answers and isinstance(answers[-1], P.Done) and answers[-1].request_id == 8):
            msg = child.poll(60)
            assert msg is not None
            answers.append(msg)
    finally:
        child.close(P.encode(P.Shutdown()))
    done7 = [m for m in answers if isinstance(m, P.Done) and m.request_id == 7]
    assert len(done7) == 2 and all(d.stop_reason == "cancelled" and d.n_prompt_evaluated == 0 for d in done7)
    assert not any(isinstance(m, P.TokenChunk | P.TokenCount) and m.request_id == 7 for m in answers)
    done8 = answers[-1]
    assert isinstance(done8, P.Done) and done8.stop_reason == "max_tokens" and done8.n_gen_tokens == 3


def test_cancel_while_streaming_stops_promptly(engine: EngineClient) -> None:
    rid = engine.new_request_id()
    seen = 0
    t_cancel = 0.0
    for ev in engine.generate(CHATML.format(q="Write a very long story about a dragon."),
                              P.Sampling(temperature=0.8, max_tokens=500, seed=1, ignore_eos=True), request_id=rid, flush_ms=0):  # fmt: skip
        if isinstance(ev, P.TokenChunk):
            seen += ev.n_tokens
            if seen >= 5 and not t_cancel:
                t_cancel = time.perf_counter()
                engine.cancel(rid)
        else:
            latency = time.perf_counter() - t_cancel
            assert ev.stop_reason == "cancelled" and 5 <= ev.n_gen_tokens < 500
            assert latency < 0.5  # one token here (~25 ms); generous for a loaded shared machine
    assert any(
        isinstance(e, P.Done) for e in engine.generate(CHATML.format(q="Hi"), P.Sampling(max_tokens=4))
    )


def test_one_request_at_a_time_across_threads(engine: EngineClient) -> None:
    counts: list[int] = []
    gen = engine.generate(
        CHATML.format(q="Tell me about rivers."), P.Sampling(temperature=0, max_tokens=24, ignore_eos=True)
    )
    next(gen)
    other = threading.Thread(target=lambda: counts.append(engine.count_tokens("one two three")))
    other.start()
    other.join(0.3)
    assert other.is_alive() and not counts  # it waits for the stream, instead of reading its messages
    with pytest.raises(RuntimeError, match="still open"):
        engine.count_tokens("nested on the streaming thread")
    rest = list(gen)
    other.join(10)
    assert isinstance(rest[-1], P.Done) and rest[-1].stop_reason != "cancelled" and counts and counts[0] >= 3


def kill_mid_stream(client: EngineClient, seed: int) -> list[BaseException]:
    """SIGKILL the model process while one thread streams and another presses Stop in a loop (for
    another request, so the stream cannot end first); the errors the streaming thread got."""
    rid, other = client.new_request_id(), client.new_request_id()
    errors: list[BaseException] = []
    started, finished = threading.Event(), threading.Event()

    def stream() -> None:
        try:
            for ev in client.generate(CHATML.format(q="Tell me a long story."),
                                      P.Sampling(temperature=0.8, max_tokens=400, seed=seed, ignore_eos=True), request_id=rid):  # fmt: skip
                if isinstance(ev, P.TokenChunk):
                    started.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            started.set()
            finished.set()

    def press_stop() -> None:
        while not finished.is_set():
            client.cancel(other)  # never raises, never waits for the stream

    streamer = threading.Thread(target=stream)
    streamer.start()
    assert started.wait(60)
    stopper = threading.Thread(target=press_stop)
    stopper.start()
    pid = client.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    streamer.join(30)
    stopper.join(30)
    return errors


def test_a_kill_racing_cancels_from_another_thread_is_reported_as_the_kill(smollm2_path: Path) -> None:
    """Every time, the stream's error and every later call name the SIGKILL — never "exited with
    code 0", which a cancel's teardown racing the stream's used to report."""
    load = P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=2)
    with EngineClient() as client:
        for trial in range(10):
            client.load(load)
            errors = kill_mid_stream(client, seed=trial)
            assert len(errors) == 1 and isinstance(errors[0], EngineError), (trial, errors)
            message = str(errors[0])
            assert "ended while writing an answer: it was killed (SIGKILL" in message, (trial, message)
            with pytest.raises(EngineError) as later:
                client.count_tokens("hello")
            assert str(later.value) == message


def test_close_from_another_thread_ends_the_stream_at_once(smollm2_path: Path) -> None:
    """Closing the window while an answer streams: the answer ends as cancelled (or, if the
    process is gone first, with the closing as its cause), within a token, not 400 tokens later."""
    client = EngineClient()
    client.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=2))
    gen = client.generate(
        CHATML.format(q="Tell me a long story."), P.Sampling(max_tokens=400, temperature=0.8, ignore_eos=True)
    )
    next(gen)
    t0 = time.perf_counter()
    closer = threading.Thread(target=client.close)
    closer.start()
    rest: list[P.TokenChunk | P.Done] = []
    try:
        rest.extend(gen)
        done = rest[-1]
        assert isinstance(done, P.Done) and done.stop_reason == "cancelled" and done.n_gen_tokens < 400
    except EngineError as exc:
        assert "ended while writing an answer: TailorLM closed it" in str(exc)
    closer.join(10)
    assert time.perf_counter() - t0 < 2.0 and client.pid is None
    death = client.last_death
    assert death is not None and death.returncode == 0 and death.closed_by_app

"""The model process with real models: streaming, stop strings, crashes, bad files. No mocks of
llama.cpp, and no expectation of a model's exact words: they change with the CPU's instruction set,
so each test derives what it expects from the model's own output in the same test.

Cancels and the threads that send them: ``test_cancel.py``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.errors import EngineError
from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.errors import LoadFailed

CHATML = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[EngineClient]:
    with EngineClient() as client:
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=2048, n_threads=2))
        yield client


def _text(events: list[P.TokenChunk | P.Done]) -> str:
    return "".join(e.text for e in events if isinstance(e, P.TokenChunk))


def test_protocol_round_trip() -> None:
    for msg in (P.Load(model_path="/m.gguf", n_ctx=8192, type_k="Q8_0"),
                P.Generate(request_id=3, prompt="hi", sampling=P.Sampling(temperature=0.2, stop=("</s>",))),
                P.Done(request_id=3, stop_reason="eos", n_prompt_tokens=5, n_prompt_evaluated=5, n_gen_tokens=2,
                       ttft_ms=1.5, prompt_tok_s=10.0, gen_tok_s=20.0, rss_bytes=1, peak_rss_bytes=2),
                P.Done.cancelled_before_start(4),
                P.Failed(stage="score_quality", message="no", hint="try", error="TextTooShortError"),
                P.QuantizeProgress(fraction=0.5, tensor="blk.0.attn_q.weight")):  # fmt: skip
        assert P.decode(P.encode(msg)) == msg
    unknown = P.Done.cancelled_before_start(4)  # unknown is not zero
    assert unknown.ttft_ms is None and unknown.n_prompt_tokens is None and unknown.rss_bytes is None


def test_streams_tokens_then_usage(engine: EngineClient) -> None:
    events = list(engine.generate(CHATML.format(q="What is the capital of France?"),
                                  P.Sampling(temperature=0, max_tokens=32, ignore_eos=True)))  # fmt: skip
    chunks = [e for e in events if isinstance(e, P.TokenChunk)]
    done = events[-1]
    assert isinstance(done, P.Done) and chunks and _text(events).strip()
    assert sum(c.n_tokens for c in chunks) == done.n_gen_tokens > 0
    assert done.stop_reason == "max_tokens" and done.n_gen_tokens == 32
    assert done.n_prompt_tokens is not None and 0 < done.n_prompt_evaluated <= done.n_prompt_tokens
    assert done.ttft_ms and done.gen_tok_s and done.prompt_tok_s
    assert done.peak_rss_bytes and done.rss_bytes and done.peak_rss_bytes >= done.rss_bytes > 50 << 20


def test_stats_report_memory_and_context_use(engine: EngineClient) -> None:
    list(engine.generate(CHATML.format(q="Hello"), P.Sampling(temperature=0, max_tokens=4)))
    st = engine.stats()
    assert st.loaded and st.n_ctx == 2048 and 0 < st.n_ctx_used < 2048
    assert st.peak_rss_bytes >= st.rss_bytes > 50 << 20


def test_greedy_is_deterministic_and_reuses_the_prompt_cache(engine: EngineClient) -> None:
    # The first run evaluates the prompt in one batch, the later ones only its last token: another
    # batch shape can round differently, so the runs compared start from the same cache.
    prompt = CHATML.format(q="Name three colours.")
    runs = [
        list(engine.generate(prompt, P.Sampling(temperature=0, max_tokens=16, ignore_eos=True)))
        for _ in range(3)
    ]
    assert _text(runs[1]) == _text(runs[2]) and _text(runs[1])
    second = runs[1][-1]
    assert isinstance(second, P.Done) and second.n_prompt_tokens is not None
    assert second.n_prompt_evaluated < second.n_prompt_tokens


def test_greedy_fast_path_picks_what_llama_cpps_sampler_chain_picks(engine: EngineClient) -> None:
    """Plain greedy runs as an argmax over the logits; llama.cpp's chain with top-k 1 must agree token for token."""
    prompt = CHATML.format(q="Write a haiku about the sea.")
    fast = P.Sampling(temperature=0, repeat_penalty=1.0, max_tokens=48, ignore_eos=True)
    chain = P.Sampling(
        temperature=1.0,
        top_k=1,
        top_p=1.0,
        min_p=0.0,
        repeat_penalty=1.0,
        max_tokens=48,
        seed=7,
        ignore_eos=True,
    )
    list(engine.generate(prompt, fast))  # the cache now holds the prompt: every run below starts alike
    texts = [_text(list(engine.generate(prompt, s))) for s in (fast, chain, fast)]
    assert len(texts[0]) > 40
    assert texts[0] == texts[1] == texts[2]


def test_stop_strings_end_the_answer(engine: EngineClient) -> None:
    """A stop string taken from the model's own answer ends the same answer right before it.
    (On an AMD EPYC with AVX2 the greedy answer here is "1. 20\n2. 30"; elsewhere it counts.)"""
    prompt = CHATML.format(q="Count from 1 to 20, separated by commas.")
    greedy = P.Sampling(temperature=0, max_tokens=48, ignore_eos=True)  # 48 tokens, whatever the words
    list(engine.generate(prompt, greedy))  # the same cache for both runs below
    full = _text(list(engine.generate(prompt, greedy)))
    assert len(full) >= 20, full
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    before = full[: full.find(stop)]
    events = list(engine.generate(prompt, replace(greedy, stop=(stop, "\x00never"))))
    done = events[-1]
    assert isinstance(done, P.Done) and done.stop_reason == "stop_string"
    assert _text(events) == before and stop not in _text(events)
    # the stop string's tokens were generated, but never sent
    assert done.n_gen_tokens >= sum(e.n_tokens for e in events if isinstance(e, P.TokenChunk))


def test_killed_process_gives_a_clear_error_and_the_next_load_works(smollm2_path: Path) -> None:
    with EngineClient() as client:
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2))
        gen = client.generate(
            CHATML.format(q="Tell me about the sea."), P.Sampling(max_tokens=200, ignore_eos=True)
        )
        next(gen)
        client.kill()
        with pytest.raises(
            EngineError, match=r"model process ended while writing an answer: it was killed \(SIGKILL"
        ):
            for _ in gen:
                pass
        assert client.pid is None and client.loaded is None
        death = client.last_death
        assert death is not None and death.returncode == -9 and death.stage == "while writing an answer"
        with pytest.raises(EngineError) as later:  # the same cause for every later caller
            client.count_tokens("hello")
        assert str(later.value) == death.sentence("The model process")
        loaded = client.load(P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2))
        assert loaded.n_ctx == 1024 and client.count_tokens("hello world") >= 2 and client.last_death is None


def test_a_tensor_table_that_does_not_fit_the_file_is_named_damaged(
    tmp_path: Path, smollm2_path: Path
) -> None:
    data = bytearray(smollm2_path.read_bytes())
    name = b"blk.0.attn_q.weight"
    at = data.find(name) + len(name) + 4  # past the name and the dimension count: the first dimension
    data[at : at + 8] = (1 << 40).to_bytes(8, "little")  # a tensor far larger than the file
    bad = tmp_path / "huge-tensor.gguf"
    bad.write_bytes(bytes(data))
    with EngineClient() as client, pytest.raises(LoadFailed) as err:
        client.load(P.Load(model_path=str(bad), n_ctx=512))
    assert "looks damaged" in str(err.value) and "failed to load model" not in str(err.value)


def test_a_crash_while_reading_a_file_names_the_file_and_llama_cpps_last_error() -> None:
    """ggml aborts on some damage instead of failing the load: the death says what llama.cpp said."""
    import signal

    from app.engine.child import ChildDeath
    from app.engine.client import _died_reading
    from app.engine.errors import ProcessDied

    tail = ("llama_model_loader: loaded meta data\n",
            "ggml.c:1234: GGML_ASSERT(ne0 % blck_size == 0) failed\n")  # fmt: skip
    death = ChildDeath(-signal.SIGABRT, "while loading the model", None, tail, closed_by_app=False)
    died = _died_reading(ProcessDied(death.sentence("The model process"), death=death, hint="smaller"),
                         P.Load(model_path="/models/x.gguf"))  # fmt: skip
    assert "x.gguf looks damaged" in str(died) and "GGML_ASSERT(ne0 % blck_size == 0) failed" in str(died)
    assert "Download it again" in (died.hint or "")
    oom = ChildDeath(-signal.SIGABRT, "while loading the model", "out of memory", tail, closed_by_app=False)
    same = ProcessDied("…", death=oom, hint="smaller")
    assert _died_reading(same, P.Load(model_path="/models/x.gguf")) is same  # a CUDA error is not damage


def test_corrupt_file_is_a_load_error_not_a_crash(tmp_path: Path, smollm2_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    with smollm2_path.open("rb") as f:
        bad.write_bytes(f.read(5_000_000))  # truncated: header fine, tensors missing
    with EngineClient() as client:
        with pytest.raises(LoadFailed, match=r"could not load bad\.gguf") as err:
            client.load(P.Load(model_path=str(bad), n_ctx=512))
        # It says the file is damaged, with llama.cpp's own reason — not "try a smaller quantization".
        assert "looks damaged" in str(err.value) and "not within the file bounds" in str(err.value)
        assert "Download it again" in (err.value.hint or "") and "quantization" not in (err.value.hint or "")
        assert client.pid is not None  # the model process survived and serves the next load
        client.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=2))

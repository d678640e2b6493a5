"""The model process's C helpers (app/engine/native): the sampler's cut gives the same candidates as
the numpy path, the same penalised logits, the logits put back; the abort callback stops a prompt
inside its batch as the Python one does; and a machine without a compiler, a damaged cache or a
library of another version still samples (numpy) and stops (Python), saying why.

tests/engine/test_sampler.py holds both sampling paths against llama.cpp's whole chain, draw by draw."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.engine import native
from app.engine import protocol as P
from app.engine.sampler import RepeatPenalty, TopKSampler, top_candidates

L: Any = pytest.importorskip("llama_cpp")


@pytest.fixture
def helper() -> native.Native:
    lib = native.library()
    if lib is None:
        if native.compiler() is not None:  # a compiler is here: the helper must have been built
            pytest.fail(
                f"the C helper was not built although {native.compiler()} is here: {native.why_not()}"
            )
        pytest.skip(f"no C compiler here: {native.why_not()}")
    return lib


def _shapes(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32) * 2.5 - 1.0
    x[rng.choice(n, min(12, n), replace=False)] += 8
    return {
        "model-like": x,
        "many ties": rng.integers(0, 4, n).astype(np.float32),
        "ascending": np.arange(n, dtype=np.float32),
        "descending": -np.arange(n, dtype=np.float32),
        "constant": np.zeros(n, np.float32),
        "masked": np.where(rng.random(n) < 0.9, -np.inf, rng.standard_normal(n)).astype(np.float32),
        "one block holds the top": np.concatenate(
            [np.zeros(n - min(n, 300), np.float32), np.linspace(1, 2, min(n, 300), dtype=np.float32)]
        ),
    }


def _c_candidates(sampler: TopKSampler, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sampler.native = native.library()  # also at k = 1, where the sampler itself takes an argmax
    m = sampler.native_candidates(logits)
    return sampler._ids[:m].copy(), sampler._vals[:m].copy()


@pytest.mark.parametrize("n_vocab", [262_144, 151_936, 49_152, 32_000, 1000, 257, 130, 7])
def test_c_and_numpy_give_the_same_candidates_in_the_same_order(helper: native.Native, n_vocab: int) -> None:
    for k in (1, 5, 40, 100):
        sampler = TopKSampler(L, n_vocab, P.Sampling(top_k=k, repeat_penalty=1.0), use_native=True)
        try:
            for name, x in _shapes(n_vocab).items():
                before = x.copy()
                ids, vals = _c_candidates(sampler, x)
                expected = top_candidates(x, k)
                assert np.array_equal(ids, expected), (name, k)
                assert np.array_equal(vals, x[expected]), (name, k)
                assert np.array_equal(x, before), (name, k)
        finally:
            sampler.close()


@pytest.mark.parametrize(
    "penalty",
    [(1.1, 0.0, 0.0), (1.5, 0.0, 0.0), (1.0, 0.6, 0.4), (1.3, 0.25, 0.1)],
    ids=["repeat", "strong repeat", "frequency and presence", "all three"],
)
def test_the_penalty_is_the_same_float_arithmetic(helper: native.Native, penalty: tuple[float, ...]) -> None:
    """The candidates' logits after the penalty are bit for bit numpy's (RepeatPenalty.apply, itself
    checked against llama.cpp's chain), the history wraps and repeats, and the logits come back."""
    repeat, frequency, presence = penalty
    n = 32_000
    x = _shapes(n)["model-like"]
    top = [int(i) for i in np.argsort(-x)[:50]]
    s = P.Sampling(top_k=60, repeat_penalty=repeat, frequency_penalty=frequency, presence_penalty=presence,
                   repeat_last_n=24)  # fmt: skip
    sampler = TopKSampler(L, n, s, use_native=True)
    try:
        for step, token in enumerate([*top[:30], top[0], top[0], top[3], *top[10:40]]):
            sampler.penalty.accept(token)
            before = x.copy()
            ids, vals = _c_candidates(sampler, x)
            assert np.array_equal(x, before), step
            reference = x.copy()
            sampler.penalty.apply(reference)  # in place, as the numpy path does
            assert np.array_equal(ids, top_candidates(reference, 60)), step
            assert np.array_equal(vals.view(np.uint32), reference[ids].view(np.uint32)), step
        assert sampler.penalty.n == len(set(sampler.penalty.history)) <= 24
    finally:
        sampler.close()


def test_more_candidates_than_room(helper: native.Native) -> None:
    """Equal logits make every token a candidate: the helper says how many, the sampler makes room
    and asks again, and the chain still draws one of them."""
    n = 50_000
    sampler = TopKSampler(L, n, P.Sampling(top_k=40, repeat_penalty=1.0, seed=1), use_native=True)
    try:
        room = sampler._capacity
        x = np.full(n, 0.5, np.float32)
        assert sampler.native_candidates(x) == n > room
        assert sampler._capacity >= n
        assert 0 <= sampler.pick(x) < n
    finally:
        sampler.close()


def test_repeat_penalty_slots_follow_the_history() -> None:
    """The penalty's id/count arrays (what the helper reads) always hold the history's counts."""
    p = RepeatPenalty(1.2, 8)
    rng = np.random.default_rng(0)
    for token in rng.integers(0, 6, 500).tolist():
        p.accept(int(token))
        counts = {int(t): int(c) for t, c in zip(p.ids[: p.n], p.counts[: p.n], strict=True)}
        expected: dict[int, int] = {}
        for t in p.history:
            expected[t] = expected.get(t, 0) + 1
        assert counts == expected


def _fresh_load(monkeypatch: pytest.MonkeyPatch) -> tuple[native.Native | None, str]:
    monkeypatch.setattr(native, "_loaded", None)
    return native.library(), native.why_not()


def test_without_a_compiler_the_sampler_uses_numpy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(native, "compiler", lambda: None)
    lib, why = _fresh_load(monkeypatch)
    assert lib is None and why == "could not build tailorlm_native: no C compiler (set CC)"
    sampler = TopKSampler(L, 1000, P.Sampling(seed=3))
    try:
        assert sampler.native is None
        assert 0 <= sampler.pick(_shapes(1000)["model-like"]) < 1000
    finally:
        sampler.close()


def test_a_failing_compiler_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path))
    monkeypatch.setattr(native, "compiler", lambda: [sys.executable, "-c", "import sys; sys.exit('no luck')"])
    lib, why = _fresh_load(monkeypatch)
    assert lib is None and why.startswith("could not build tailorlm_native:") and "no luck" in why
    assert not list(native.cached_library().parent.iterdir())  # no half-written library left


def test_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "0")
    assert _fresh_load(monkeypatch) == (None, "TAILORLM_NATIVE=0")


def test_a_damaged_cached_library_is_built_again(
    helper: native.Native, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path))
    cached = native.cached_library()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"\x7fELF cut short")
    lib, why = _fresh_load(monkeypatch)
    assert lib is not None and lib.path == cached and why == ""
    assert cached.stat().st_size > 1000


def test_a_library_of_another_version_is_refused(helper: native.Native, tmp_path: Path) -> None:
    source = tmp_path / "other.c"
    source.write_text(native.SOURCES[0].read_text().replace("return 2; }", "return 99; }", 1))
    cc = native.compiler()
    assert cc is not None
    out = tmp_path / ("other" + native.LIB_SUFFIX)
    subprocess.run([*cc, *native.CFLAGS, "-o", str(out), str(source), str(native.SOURCES[1])], check=True,
                   capture_output=True)  # fmt: skip
    lib, why = native._open(out)
    assert lib is None and why == f"{out} is version 99, not {native.VERSION}"


def test_builds_at_once_never_load_half_a_file(helper: native.Native, tmp_path: Path) -> None:
    """Several processes' first chats at the same moment: each builds to a temporary name and
    renames, so every one of them ends with a whole library and no temporary file is left."""
    dest = native.cached_path(tmp_path)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            native.build(dest)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == [dest.name]
    lib, why = native._open(dest)
    assert lib is not None, why
    assert ctypes.CDLL(str(dest)).tlm_native_version() == native.VERSION


def test_the_module_says_where_the_helper_is(helper: native.Native) -> None:
    done = subprocess.run([sys.executable, "-m", "app.engine.native"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_file()


def test_the_c_abort_callback_reads_the_flag(helper: native.Native) -> None:
    flag = native.AbortFlag()
    requested = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)(helper.abort_address)
    address = ctypes.addressof(flag.flag)
    assert not requested(address) and not flag.is_set()
    flag.set()
    assert requested(address) and flag.is_set()
    flag.clear()
    assert not requested(address) and not flag.is_set()


@pytest.mark.parametrize("callback", ["C", "Python"])
def test_a_cancel_stops_a_prompt_inside_its_batch_with_either_callback(
    callback: str, smollm2_path: Path
) -> None:
    """One 512-token batch, cancelled a quarter of the way in, ends well before the batch would:
    the C callback (an AbortFlag and the library) and the Python one (any other event) alike."""
    from app.engine.llama_session import LlamaSession
    from app.engine.token_stream import GenStats

    if callback == "C" and native.library() is None:
        pytest.skip(f"the C helpers are not available here: {native.why_not()}")
    cancel = native.AbortFlag() if callback == "C" else threading.Event()
    session = LlamaSession(cancel)
    session.load(P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2), lambda f: None)
    try:
        tokens = session.tokenize(" ".join(str(i) for i in range(600)))[:512]
        t0 = time.perf_counter()
        assert session._evaluate_prompt(tokens, GenStats())
        whole = time.perf_counter() - t0
        session.kv_tokens = []
        stats = GenStats()
        timer = threading.Timer(whole / 4, cancel.set)
        timer.start()
        t0 = time.perf_counter()
        assert not session._evaluate_prompt(tokens, stats)
        stopped = time.perf_counter() - t0
        timer.join()
        assert stats.n_prompt_evaluated == 0 and stopped < 0.75 * whole, (stopped, whole)
    finally:
        cancel.clear()
        session.unload()

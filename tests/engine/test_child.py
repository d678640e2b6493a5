"""The one child-process runner: how a child's death is told, and that it is told the same way to
every thread that meets it. Real processes: the model process without a model, and a child that
aborts after a CUDA error the way ggml does."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import EngineError
from app.engine import protocol as P
from app.engine.child import ChildProcess, signal_words
from app.engine.errors import ProcessDied


@pytest.fixture
def worker() -> Iterator[ChildProcess[P.Message]]:
    child: ChildProcess[P.Message] = ChildProcess(
        "app.engine.worker", decode=P.decode, what="The model process"
    )
    yield child
    child.close(P.encode(P.Shutdown()))


def _until_death(child: ChildProcess[P.Message]) -> ProcessDied:
    with pytest.raises(ProcessDied) as info:
        while True:
            child.poll(10)
    return info.value


def test_signals_are_told_in_words() -> None:
    assert signal_words(-9, oom_killed=True) == "the system ran out of memory and killed it (SIGKILL)"
    assert signal_words(-9, oom_killed=False) == (
        "it was killed (SIGKILL) from outside TailorLM; the system reports no out-of-memory kill"
    )
    assert signal_words(-9) == "it was killed (SIGKILL); this system does not say whether memory ran out"
    assert signal_words(-signal.SIGSEGV) == "it crashed (SIGSEGV)"
    assert signal_words(-signal.SIGABRT) == "llama.cpp aborted (SIGABRT)"
    assert signal_words(3) == "it exited with code 3"


def test_an_abort_after_a_cuda_error_names_both_and_the_stage() -> None:
    child: ChildProcess[P.Message] = ChildProcess("tests.engine.crashing_child", decode=P.decode,
                                                  what="The model process", hint="Use fewer GPU layers.")  # fmt: skip
    child.stage = "while loading the model"
    child.send(b"go\n")
    died = _until_death(child)
    assert str(died) == (
        "The model process ended while loading the model: llama.cpp aborted (SIGABRT) after CUDA error: out of memory."
    )
    assert died.hint == "Use fewer GPU layers." and died.death.device_error == "out of memory"
    assert child.pid is None and not child.alive


def test_a_segfault_is_a_crash(worker: ChildProcess[P.Message]) -> None:
    worker.send(P.encode(P.Stats(request_id=1)))
    assert isinstance(worker.poll(30), P.StatsReport)  # it runs and answers
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGSEGV)
    assert "ended unexpectedly: it crashed (SIGSEGV)." in str(_until_death(worker))


def test_the_death_is_computed_once_and_told_alike_to_every_thread(worker: ChildProcess[P.Message]) -> None:
    """A reader, two writers and a bystander meet the same SIGKILL: one death object, one sentence."""
    worker.send(P.encode(P.Stats(request_id=1)))
    assert isinstance(worker.poll(30), P.StatsReport)
    worker.stage = "while writing an answer"
    errors: list[EngineError] = []
    go = threading.Barrier(4)

    def read() -> None:
        go.wait()
        errors.append(_until_death(worker))

    def write() -> None:
        go.wait()
        try:
            while True:
                worker.send(P.encode(P.Cancel(request_id=2)))
        except ProcessDied as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (read, write, write)]
    for t in threads:
        t.start()
    pid = worker.pid
    assert pid is not None
    go.wait()
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
    errors.append(worker.died())
    assert len(errors) == 4
    sentences = {str(e) for e in errors}
    assert len(sentences) == 1
    assert sentences.pop().startswith(
        "The model process ended while writing an answer: it was killed (SIGKILL)"
    )
    assert len({id(e.death) for e in errors if isinstance(e, ProcessDied)}) == 1


def test_close_is_safe_from_many_threads_and_says_who_closed(worker: ChildProcess[P.Message]) -> None:
    closers = [threading.Thread(target=worker.close, args=(P.encode(P.Shutdown()),)) for _ in range(4)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(10)
    death = worker.death
    assert death is not None and death.returncode == 0 and death.closed_by_app
    with pytest.raises(ProcessDied, match="ended unexpectedly: TailorLM closed it"):
        worker.send(P.encode(P.Stats(request_id=3)))


def test_a_kill_from_outside_is_not_blamed_on_memory(worker: ChildProcess[P.Message]) -> None:
    worker.hint, worker.other_hint = "Use a smaller model.", "Load the model again."
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    died = _until_death(worker)
    if died.death.oom_killed is None:
        pytest.skip("this system shows no out-of-memory counters")
    assert "from outside TailorLM; the system reports no out-of-memory kill" in str(died)
    assert died.hint == "Load the model again."


def _memory_cgroup(tmp_limit_bytes: int) -> Iterator[Path]:
    """A memory cgroup (v2, or v1's memory controller) limited to ``tmp_limit_bytes``, no swap."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists() and "memory" in v2.read_text().split():
        group = Path(f"/sys/fs/cgroup/tailorlm-test-{os.getpid()}")
        limits = {"memory.max": tmp_limit_bytes, "memory.swap.max": 0}
    else:
        group = Path(f"/sys/fs/cgroup/memory/tailorlm-test-{os.getpid()}")
        limits = {"memory.limit_in_bytes": tmp_limit_bytes, "memory.swappiness": 0}
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"no writable memory cgroup here ({exc.strerror})")
    try:
        for name, value in limits.items():
            with contextlib.suppress(OSError):  # memory.swap.max is absent without swap accounting
                (group / name).write_text(str(value))
        yield group
    finally:
        for _ in range(50):  # the killed child leaves the group once reaped
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_an_out_of_memory_kill_is_named_as_such() -> None:
    child: ChildProcess[P.Message] = ChildProcess("tests.engine.hungry_child", decode=P.decode,
                                                  what="The model process", hint="Use a smaller model.",
                                                  other_hint="Load the model again.")  # fmt: skip
    try:
        for group in _memory_cgroup(96 << 20):
            assert child.pid is not None
            (group / "cgroup.procs").write_text(str(child.pid))
            child.send(b"eat\n")
            died = _until_death(child)
    finally:
        child.close()
    assert died.death.returncode == -signal.SIGKILL
    assert died.death.oom_killed is True
    assert (
        str(died)
        == "The model process ended unexpectedly: the system ran out of memory and killed it (SIGKILL)."
    )
    assert died.hint == "Use a smaller model."


_BLAS_THREADS = """
import ctypes, numpy  # numpy loads its BLAS; ask that library how many threads it runs
lib = next((line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line.lower()), None)
if lib is None:
    print('none')
else:
    blas = ctypes.CDLL(lib)
    name = next(n for n in ('scipy_openblas_get_num_threads64_', 'openblas_get_num_threads64_',
                            'openblas_get_num_threads') if hasattr(blas, n))
    print(getattr(blas, name)())
"""


def test_numpys_blas_leaves_the_cores_to_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    """A llama.cpp child runs numpy's BLAS on one thread (its spinning threads took turns from
    llama.cpp's), unless the user chose a thread count."""
    import subprocess
    import sys

    from app.engine.child import child_env

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: BLAS runs one thread anyway")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)

    def threads() -> str:
        return subprocess.run([sys.executable, "-c", _BLAS_THREADS], env=child_env(), capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()  # fmt: skip

    if threads() == "none":
        pytest.skip("numpy here is not built on OpenBLAS")
    assert threads() == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert threads() == "2"

"""Settling a loaded model's pages (app/engine/page_advice.py), read back from the kernel on real
loads: the ``rr`` flag (random reads) in /proc/self/smaps, the mapping's resident set after the
read-once ranges are handed back, and the same answer from the pages that stay."""

from __future__ import annotations

import os
import sys

import pytest

from app.engine import protocol as P
from app.engine.page_advice import settle_pages
from tests import models

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="madvise advice is read from /proc"
)


def _smaps(path: str, key: str) -> list[list[str]]:
    """The fields of the ``key:`` line of every mapping of ``path`` in /proc/self/smaps."""
    target, found, current = os.path.realpath(path), [], False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's first line
                current = len(head) == 6 and head[5].rstrip("\n") == target
            elif current and line.startswith(f"{key}:"):
                found.append(line.split()[1:])
    return found


def _vm_flags(path: str) -> list[set[str]]:
    """The VmFlags of every mapping of ``path`` in this process."""
    return [set(f) for f in _smaps(path, "VmFlags")]


def test_a_loaded_model_is_mapped_for_random_reads() -> None:
    from app.engine.llama_session import LlamaSession

    path = str(models.smollm2_path())
    session = LlamaSession()
    session.load(P.Load(model_path=path, n_ctx=256, n_gpu_layers=0), lambda f: None)
    try:
        flags = _vm_flags(path)
        assert flags, "llama.cpp maps the model file"
        assert all("rr" in f for f in flags)
    finally:
        session.unload()


def _mapped_rss(path: str) -> int:
    return sum(int(f[0]) * 1024 for f in _smaps(path, "Rss"))  # "Rss:  1234 kB"


def _greedy(session: object, n: int = 12) -> list[str]:
    from app.engine.token_stream import GenStats

    s = P.Sampling(temperature=0.0, repeat_penalty=1.0, max_tokens=n, ignore_eos=True)
    return [p.text for p in session.generate("The capital of France is", s, GenStats(), flush_s=0.0)]  # type: ignore[attr-defined]


def test_read_once_pages_are_handed_back_and_the_answer_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.engine.llama_session as ls
    from app.core.advice.chat_plan import ChatOverrides, plan_chat
    from app.core.advice.recommend import budget_from_profile
    from app.core.machine.hardware import detect_machine
    from app.core.model.source import model_from_gguf
    from app.engine.page_advice import PageAdvice

    path = str(models.gemma3_path())
    plan = plan_chat(
        model_from_gguf(models.gemma3_path()),
        budget_from_profile(detect_machine(measure_bandwidth=False)),
        ChatOverrides(n_ctx=512),
    )
    if not plan.read_once:
        pytest.skip("this CPU repacks none of Gemma-3-270M's tensors: nothing is read only once")
    monkeypatch.setattr(ls, "settle_pages", lambda path, read_once=(): PageAdvice())
    session = ls.LlamaSession()
    try:
        session.load(P.Load.from_plan(plan), lambda f: None)  # the pages as llama.cpp leaves them
        before_rss = _mapped_rss(path)
        before = _greedy(session)
        advice = settle_pages(path, plan.read_once)
        after_rss = _mapped_rss(path)
        assert advice.released_bytes == sum(n for _, n in plan.read_once)
        tensors = sum(n for _, n in plan.read_once[1:])  # the first range is the header, not mapped
        assert before_rss - after_rss >= tensors
        assert advice.prefetched_bytes == advice.mapped_bytes - tensors
        assert all("rr" in f for f in _vm_flags(path))
        session.kv_tokens = []  # evaluate the same prompt again, from the settled pages
        assert _greedy(session) == before
    finally:
        session.unload()


def test_a_load_through_the_plan_reports_what_it_handed_back() -> None:
    from app.engine.llama_session import LlamaSession

    path = str(models.gemma3_path())
    session = LlamaSession()
    try:
        info = session.load(P.Load(model_path=path, n_ctx=256, read_once=((0, 1 << 40),)), lambda f: None)
        # A range past the file's end is cut at the end; the header page is not mapped any more.
        assert 0 < info["released_bytes"] <= os.path.getsize(path)
        assert _greedy(session, 4)  # every page read back on demand: the model still answers
    finally:
        session.unload()


def test_nothing_mapped_nothing_advised() -> None:
    assert settle_pages(__file__, [(0, 4096)]).mapped_bytes == 0  # this test file is not mapped

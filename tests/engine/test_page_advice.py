"""The model file's mapping is advised for random reads once loaded (app/engine/page_advice.py):
the kernel's own record of the advice, the ``rr`` flag in /proc/self/smaps, on a real load."""

from __future__ import annotations

import os
import sys

import pytest

from app.engine import protocol as P
from app.engine.page_advice import advise_random_reads
from tests import models

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="madvise advice is read from /proc"
)


def _vm_flags(path: str) -> list[set[str]]:
    """The VmFlags of every mapping of ``path`` in this process."""
    target, flags, current = os.path.realpath(path), [], False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's first line
                current = len(head) == 6 and head[5].rstrip("\n") == target
            elif current and line.startswith("VmFlags:"):
                flags.append(set(line.split()[1:]))
    return flags


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


def test_nothing_mapped_nothing_advised() -> None:
    assert advise_random_reads(__file__) == 0  # this test file is not mapped

"""What the installed llama.cpp build can offload to, asked in this process — the probe child's
work (tests/core/machine/test_probe.py runs it in the child)."""

from __future__ import annotations

import sys

import pytest

from app.core.machine.offload import detect_offload


def test_offload_matches_the_installed_build() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    offload, notes = detect_offload()
    assert offload.installed and notes == ()
    # llama_supports_gpu_offload() is true for the RPC backend alone: a GPU is a GPU device of the build
    own_gpu = any(d.kind in ("gpu", "igpu") and d.backend != "RPC" for d in offload.devices)
    assert offload.build_supports_gpu == own_gpu
    assert offload.build_supports_gpu == (
        (bool(llama_cpp.llama_supports_gpu_offload()) and not offload.rpc) or own_gpu
    )
    assert offload.rpc == bool(llama_cpp.llama_supports_rpc())
    assert offload.supported == offload.build_supports_gpu
    assert any(d.kind == "cpu" and d.backend == "CPU" for d in offload.devices)
    assert bool(offload.backends) == any(d.kind in ("gpu", "igpu") for d in offload.devices)


def test_missing_llama_cpp_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import raises ImportError
    offload, notes = detect_offload()
    assert not offload.supported and not offload.installed and offload.devices == ()
    assert any("llama-cpp-python is not installed" in n for n in notes)

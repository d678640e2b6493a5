"""Reading a GGUF header from the Hub with range requests, against a local fake Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import HubError, ModelNotFoundError
from app.core.gguf_header import read_gguf_file
from app.core.remote_source import read_remote_gguf_header
from tests.fake_hub import fake_hub


def test_remote_header_equals_local(gemma3_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = gemma3_path.read_bytes()
    with fake_hub({"acme/gemma-gguf": {"gemma-3-270m-Q4_K_M.gguf": data}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        remote, fetched = read_remote_gguf_header("acme/gemma-gguf", "gemma-3-270m-Q4_K_M.gguf")
    local = read_gguf_file(gemma3_path)
    assert remote.tensors == local.tensors
    assert remote.metadata == local.metadata
    assert remote.file_size_bytes == len(data)
    assert fetched < local.data_offset_bytes + (2 << 20)  # the header, not the 253 MB of weights


def test_remote_errors_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_hub({"acme/x": {}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(ModelNotFoundError, match="no file"):
            read_remote_gguf_header("acme/x", "missing.gguf")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubError, match="Could not reach"):
        read_remote_gguf_header("acme/x", "m.gguf")

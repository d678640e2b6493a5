"""Reading a GGUF header from the Hub with range requests, against a local fake Hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import HubError, ModelNotFoundError
from app.core.model.gguf_header import read_gguf_file
from app.core.model.remote import read_remote_gguf_header
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


def _checkpoint_files(tmp_path: Path, n_params: int, dtype: str) -> Path:
    """A safetensors shard holding ``n_params`` weights (sparse on disk; only its header is read)."""
    from tests.core.model.test_source import _write_safetensors

    path = tmp_path / "model.safetensors"
    _write_safetensors(path, {"model.embed_tokens.weight": (dtype, (n_params,))})
    return path


def test_hub_checkpoint_is_sized_from_config_and_safetensors_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from app.core.errors import CorruptModelError
    from app.core.model.hf_arch import header_from_hf_config
    from app.core.model.info import model_info_from_header
    from app.core.model.source import load_model

    config = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024,
              "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}  # fmt: skip
    n = model_info_from_header(
        header_from_hf_config(config, dtype="F16"), source="x", source_kind="hf_repo"
    ).n_params
    shard = _checkpoint_files(tmp_path, n, "F16")
    requests: list[str] = []
    cfg = json.dumps(config).encode()
    with fake_hub({"acme/tiny": {"config.json": cfg, "model.safetensors": shard}}, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        info = load_model("acme/tiny")
    # The header says F16 although config.json says bfloat16: the files win.
    assert info.file_type == "F16" and info.n_params == n and info.file_size_bytes == 2 * n
    reads = [r for r in requests if "model.safetensors" in r and r.startswith("GET")]
    assert reads and all("bytes=" in r for r in reads)  # range requests only: no weights fetched
    # A shard that holds far fewer weights than config.json describes is a broken checkpoint.
    (tmp_path / "half").mkdir()
    small = _checkpoint_files(tmp_path / "half", n // 2, "F16")
    with fake_hub({"acme/tiny": {"config.json": cfg, "model.safetensors": small}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(CorruptModelError, match="files are missing"):
            load_model("acme/tiny")

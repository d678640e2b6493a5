"""Reading a GGUF header and a checkpoint's config.json and safetensors headers from the Hub,
against a local fake Hub: the real answers, and hostile ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.errors import CorruptModelError, HubError, ModelNotFoundError, TailorError
from app.core.model.gguf_header import read_gguf_file
from app.core.model.remote import read_remote_gguf_header
from tests.fake_hub import ANSWERS, FILE_ANSWERS, RepoMeta, fake_hub


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
    with pytest.raises(HubError, match="offline"):  # app.core.hub.online: said at once
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


# --- a hostile Hub: every bad answer is one clear error within seconds -----------------------

HOSTILE_TIMEOUT_S = 0.5


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_HUB_TIMEOUT_S", str(HOSTILE_TIMEOUT_S))


def _tiny_repo(tmp_path: Path) -> dict[str, bytes | Path]:
    """A real (tiny) checkpoint repo: config.json and two safetensors shards."""
    import json

    from tests.core.model.test_hf_config import LLAMA
    from tests.core.model.test_source import _checkpoint

    _checkpoint(tmp_path / "tiny", LLAMA)
    return {"config.json": json.dumps(LLAMA).encode(),
            **{p.name: p for p in (tmp_path / "tiny").glob("*.safetensors")}}  # fmt: skip


def _nested_arrays_gguf(depth: int) -> bytes:
    """A GGUF whose one metadata value is an array of an array of … ``depth`` deep."""
    import struct

    key = b"general.nested"
    value = struct.pack("<IQ", 9, 1) * depth + struct.pack("<IQI", 4, 1, 7)  # ARRAY of ARRAY … of UINT32
    return (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<I", 9)
        + value
    )


def _timed(call: Callable[[], object], error: type[Exception]) -> tuple[Exception, float]:
    t0 = time.monotonic()
    with pytest.raises(error) as err:
        call()
    return err.value, time.monotonic() - t0


def _one_line(err: Exception) -> str:
    message = err.user_message() if isinstance(err, TailorError) else str(err)
    assert "\n" not in message and "Traceback" not in message and len(message) < 400
    return message


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize("answer", [*ANSWERS, *FILE_ANSWERS])
def test_model_from_repo_ends_every_bad_answer_with_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """config.json and the file list through our client, the shard headers by range requests:
    whichever the server spoils, the user gets one HubError, never a hang."""
    from app.core.model.source import model_from_repo

    requests: list[str] = []
    with fake_hub({"acme/tiny": _tiny_repo(tmp_path)}, answer=answer, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        err, elapsed = _timed(lambda: model_from_repo("acme/tiny"), HubError)
    message = _one_line(err)
    assert elapsed < 5.0, f"{answer}: {elapsed:.1f} s"
    expected = {"silent": "did not answer within 0.5 s", "redirect-loop": "redirected in a loop",
                "trickle": "too slowly"}  # fmt: skip
    assert expected.get(answer, "malformed or hostile") in message, message
    if answer == "silent":  # config.json: one try and one retry
        assert len(requests) == 2 and elapsed >= 2 * HOSTILE_TIMEOUT_S
    if answer == "trickle":  # config.json and the list came; the shard's header did not, in time
        assert any("bytes=" in r for r in requests)


@pytest.mark.usefixtures("short_timeout")
@pytest.mark.parametrize(("answer", "expected"), [("silent", "did not answer within 0.5 s"),
                                                  ("redirect-loop", "redirected in a loop"),
                                                  ("trickle", "too slowly")])  # fmt: skip
def test_remote_gguf_header_read_is_bounded_in_time(
    gemma3_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, expected: str
) -> None:
    """A GGUF header read with range requests: a silent, looping or trickling server (a byte every
    0.2 s never times out one read) ends within the deadline as one HubError."""
    from app.core.hub.files import GGUFFile
    from app.core.model.remote import remote_model

    name = "gemma-3-270m-Q4_K_M.gguf"
    with gemma3_path.open("rb") as f:  # its 6.2 MiB header and a little more: hashed at once
        head = f.read(8 << 20)
    with fake_hub({"acme/gemma-GGUF": {name: head}}, answer=answer) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        err, elapsed = _timed(lambda: remote_model("acme/gemma-GGUF", GGUFFile((name,), "Q4_K_M")), HubError)
    assert expected in _one_line(err)
    assert elapsed < 5.0, f"{answer}: {elapsed:.1f} s"


def test_the_timeout_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.model.remote import HubFileSource

    monkeypatch.setenv("TAILORLM_HUB_TIMEOUT_S", "3.5")
    assert HubFileSource("acme/x", "m.gguf").timeout_s == 3.5


@pytest.mark.usefixtures("short_timeout")
def test_remote_gguf_with_nested_arrays_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.errors import ModelReadError
    from app.core.model.source import load_model

    with fake_hub({"acme/bad-GGUF": {"deep.gguf": _nested_arrays_gguf(100_000)}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        err, elapsed = _timed(lambda: load_model("acme/bad-GGUF/deep.gguf"), ModelReadError)
    _one_line(err)
    assert elapsed < 5.0


def test_a_huge_remote_safetensors_header_is_refused_before_it_is_fetched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A length prefix of 90 MB (under the reference reader's 100 MB) on a file that big: we do not
    download 90 MB to describe a model; 2**63 is refused as it stands."""
    import struct

    from app.core.model.source import MAX_REMOTE_SAFETENSORS_HEADER_BYTES, model_from_repo

    repo = _tiny_repo(tmp_path)
    for shard in [p for p in repo if p.endswith(".safetensors")]:
        del repo[shard]
    big = tmp_path / "model.safetensors"
    n = 90_000_000
    assert n > MAX_REMOTE_SAFETENSORS_HEADER_BYTES
    with big.open("wb") as f:  # sparse: the size is real, the bytes are not written
        f.write(struct.pack("<Q", n))
        f.truncate(8 + n + 64)
    for blob, expected in ((big, "more than 32 MiB"), (struct.pack("<Q", 2**63) + b"{}", "header length")):
        requests: list[str] = []
        with fake_hub({"acme/tiny": {**repo, "model.safetensors": blob}}, requests=requests) as url:
            monkeypatch.setenv("HF_ENDPOINT", url)
            err, elapsed = _timed(lambda: model_from_repo("acme/tiny"), CorruptModelError)
        assert expected in _one_line(err) and elapsed < 5.0
        ranges = [r.rsplit(" ", 1)[-1] for r in requests if "bytes=" in r]
        assert ranges and all(r == "bytes=0-7" for r in ranges), ranges  # only the length prefix


@pytest.mark.usefixtures("short_timeout")
def test_repo_answers_that_are_not_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repo without config.json, no repo at all, a gated repo, and config.json files that are
    not a model's config: each one line, the right error."""
    from app.core.errors import ModelReadError
    from app.core.model.source import model_from_repo

    repo = _tiny_repo(tmp_path)
    repos: dict[str, dict[str, bytes | Path]] = {
        "acme/only-GGUF": {"m.gguf": b"GGUF"},
        "acme/gated": repo,
        "acme/deep": {**repo, "config.json": b"[" * 100_000 + b"]" * 100_000},
        "acme/nan": {**repo, "config.json": b'{"model_type": "llama", "hidden_size": NaN}'},
        "acme/list": {**repo, "config.json": b"[1, 2, 3]"},
        "acme/html": {**repo, "config.json": b"<!DOCTYPE html><html></html>"},
    }
    cases: list[tuple[str, type[Exception], str]] = [
        ("acme/only-GGUF", ModelReadError, "has no config.json"),
        ("acme/missing", ModelNotFoundError, "no repo"),
        ("acme/gated", HubError, "gated"),
        ("acme/deep", CorruptModelError, "nested too deep"),
        ("acme/nan", CorruptModelError, "'hidden_size'"),
        ("acme/list", CorruptModelError, "not a JSON object"),
        ("acme/html", CorruptModelError, "not valid JSON"),
    ]
    with fake_hub(repos, meta={"acme/gated": RepoMeta(gated_token="hf_SECRET")}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        for repo_id, error, expected in cases:
            err, elapsed = _timed(lambda r=repo_id: model_from_repo(r), error)  # type: ignore[misc]
            assert expected in _one_line(err), (repo_id, err)
            assert elapsed < 5.0
        monkeypatch.setenv("HF_TOKEN", "hf_SECRET")
        assert model_from_repo("acme/gated").n_layer == 2  # the token opens it


def test_a_small_file_over_its_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.hub.api import repo_file

    with fake_hub({"acme/x": {"config.json": b"{}" + b" " * 4096}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        assert repo_file("acme/x", "config.json", max_bytes=8192) == b"{}" + b" " * 4096
        assert repo_file("acme/x", "missing.json") is None
        with pytest.raises(HubError, match="an answer over"):
            repo_file("acme/x", "config.json", max_bytes=1024)

"""A hostile or broken Hub never hangs us and never shows a traceback: each bad answer from the
fake Hub (silent, HTML, wrong shapes, numbers, deep nesting, a redirect loop) ends within a few
seconds as one clear HubError."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.core.errors import HubError
from app.core.hub.api import list_tree, repo_commit
from app.core.hub.download import download
from app.core.hub.repo import list_gguf_files, search_models
from tests.fake_hub import ANSWERS, fake_hub

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"
TIMEOUT_S = 0.5
CALLS: dict[str, Callable[[], object]] = {
    "search": lambda: search_models("smol"),
    "tree": lambda: list_gguf_files("acme/smol-GGUF"),
    "commit": lambda: repo_commit("acme/smol-GGUF", "main"),
}


@pytest.fixture(autouse=True)
def _short_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILORLM_HUB_TIMEOUT_S", str(TIMEOUT_S))


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("answer", ANSWERS)
def test_every_bad_answer_is_one_clear_error_within_seconds(
    monkeypatch: pytest.MonkeyPatch, answer: str, call: str
) -> None:
    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: b"GGUF"}}, answer=answer, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        t0 = time.monotonic()
        with pytest.raises(HubError) as err:
            CALLS[call]()
        elapsed = time.monotonic() - t0
    message = err.value.user_message()
    assert elapsed < 5.0, f"{answer}/{call} took {elapsed:.1f} s"
    assert "\n" not in message and "Traceback" not in message
    expected = {"silent": "did not answer within 0.5 s", "redirect-loop": "redirected in a loop"}
    assert expected.get(answer, "malformed or hostile") in message
    if answer == "silent":  # a GET is safe to repeat: exactly one retry
        assert len(requests) == 2 and elapsed >= 2 * TIMEOUT_S


def test_the_good_answers_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_hub({"acme/smol-GGUF": {SMOL: b"GGUF", "README.md": b"hi"}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        tree = list_tree("acme/smol-GGUF", "main")
        commit = repo_commit("acme/smol-GGUF", "main")
    assert {f.path: f.size_bytes for f in tree} == {SMOL: 4, "README.md": 2}
    assert [f.sha256 is None for f in tree if f.path == "README.md"] == [True]
    assert len(commit) == 40


def test_a_silent_or_looping_file_server_ends_the_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for answer, expected in (("silent", "failed after 0 retries"), ("redirect-loop", "redirected in a loop")):
        with fake_hub({"acme/smol-GGUF": {SMOL: b"GGUF"}}, answer=answer) as url:
            t0 = time.monotonic()
            with pytest.raises(HubError, match=expected):
                download(f"{url}/acme/smol-GGUF/resolve/main/{SMOL}", tmp_path / SMOL, retries=0)
            assert time.monotonic() - t0 < 5.0
    assert not (tmp_path / SMOL).exists()

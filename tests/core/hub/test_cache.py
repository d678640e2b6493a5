"""A hostile Hub's metadata cannot make a pull write outside the cache: a commit id or an LFS
SHA-256 that is a path is refused before a byte is written, and nothing is registered."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.core.errors import HubError
from app.core.hub.cache import pull
from app.core.hub.files import GGUFFile
from app.core.hub.repo import RepoGGUF, list_gguf_files
from app.core.library.pull import pull_model
from app.core.library.registry import Library
from tests.fake_hub import RepoMeta, fake_hub

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"
REPO = "acme/smol-GGUF"


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir()}


@pytest.fixture
def deep_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The cache a few folders down in tmp_path, so that an escape lands somewhere we walk."""
    cache = tmp_path / "a" / "b" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _hostile_commits(tmp_path: Path) -> list[str]:
    return [
        "../../../../outside",
        "../../outside",
        str(tmp_path / "abs-outside"),
        "..",
        "0" * 40 + "/../../x",
    ]


def test_a_commit_id_that_is_a_path_writes_nothing_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, deep_cache: Path
) -> None:
    data = b"GGUF" + bytes(64)
    for commit in _hostile_commits(tmp_path):
        before = _files(tmp_path)
        with fake_hub({REPO: {SMOL: data}}, meta={REPO: RepoMeta(commit=commit)}) as url:
            monkeypatch.setenv("HF_ENDPOINT", url)
            [rf] = list_gguf_files(REPO)  # the listing is fine; the commit id is the attack
            with pytest.raises(HubError, match=r"malformed or hostile.*not 40 hex") as err:
                pull_model(REPO, rf, library=Library())
        assert "Nothing was written" in (err.value.hint or "")
        assert _files(tmp_path) == before, commit
        assert not deep_cache.exists() or not _files(deep_cache)
        assert not [m for m in Library().models() if m.origin == "tailorlm"]


@pytest.mark.parametrize(
    "sha",
    [
        "../../../../" + "a" * 52,
        "/tmp/" + "a" * 59,
        "a" * 30 + "/../" + "a" * 30,
        "/etc/passwd",
        "../../outside",
    ],
)
def test_an_lfs_sha256_that_is_a_path_is_refused_in_the_listing_and_in_the_pull(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, deep_cache: Path, sha: str
) -> None:
    data = b"GGUF" + bytes(64)
    before = _files(tmp_path)
    with fake_hub({REPO: {SMOL: data}}, meta={REPO: RepoMeta(lfs_oids={SMOL: sha})}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        with pytest.raises(HubError, match=r"malformed or hostile.*not 64 hex"):
            list_gguf_files(REPO)
        # A RepoGGUF made elsewhere (a GUI row, an old listing) is checked again by the pull itself.
        forged = RepoGGUF(GGUFFile((SMOL,), "Q4_1", len(data)), (sha,), (len(data),))
        with pytest.raises(HubError, match="malformed or hostile"):
            pull_model(REPO, forged, library=Library())
    assert _files(tmp_path) == before
    assert not [m for m in Library().models() if m.origin == "tailorlm"]


def test_a_revision_that_is_a_path_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, deep_cache: Path
) -> None:
    data = b"GGUF" + bytes(64)
    requests: list[str] = []
    with fake_hub({REPO: {SMOL: data}}, requests=requests) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        [rf] = list_gguf_files(REPO)
        n = len(requests)
        for revision in ("../../../../outside", "/abs", "refs/../../x"):
            with pytest.raises(HubError, match="not a branch, tag or commit"):
                pull(REPO, rf, revision=revision)
            with pytest.raises(HubError, match="not a branch, tag or commit"):
                list_gguf_files(REPO, revision=revision)
    assert len(requests) == n and not deep_cache.exists()


def test_a_good_pull_still_names_everything_by_its_hashes(
    monkeypatch: pytest.MonkeyPatch, deep_cache: Path
) -> None:
    data = b"GGUF" + bytes(64)
    with fake_hub({REPO: {SMOL: data}}) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        [rf] = list_gguf_files(REPO)
        paths, commit = pull(REPO, rf, revision="main")
    root = deep_cache / "models--acme--smol-GGUF"
    assert paths == [root / "snapshots" / commit / SMOL]
    assert paths[0].resolve() == root / "blobs" / hashlib.sha256(data).hexdigest()
    assert (root / "refs" / "main").read_text() == commit
    assert {p.relative_to(deep_cache).parts[0] for p in _files(deep_cache)} == {root.name}

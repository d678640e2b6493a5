"""Names from the Hub that become paths: each exact format, and the final path inside its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import HubError
from app.core.hub.cache import repo_cache_dir
from app.core.hub.names import check_commit, check_revision, check_sha256, inside, is_repo_id, safe_relpath

SHA = "a" * 64


@pytest.mark.parametrize(
    "repo_id",
    ["gpt2", "acme/smol-GGUF", "bartowski/Llama-3.2-1B-Instruct-GGUF", "a_b/c.d", "a" * 96 + "/" + "b" * 96],
)
def test_repo_ids_the_hub_accepts(repo_id: str) -> None:
    assert is_repo_id(repo_id)


@pytest.mark.parametrize(
    "repo_id",
    ["", "a/b/c", "../x", "a/..", "a/../b", "a/.hidden", "a/b.", "-a/b", "a/b-", "a--b/c", "a/b.git", "a b/c",
     "/abs", "a/", "/", "a\\b", "a/b\0", "café/x", "a" * 97 + "/b", 7, None],
)  # fmt: skip
def test_repo_ids_the_hub_refuses_are_refused(repo_id: object) -> None:
    assert not is_repo_id(repo_id)


def test_a_repo_id_never_leaves_the_cache(tmp_path: Path) -> None:
    assert repo_cache_dir("acme/smol-GGUF", tmp_path) == tmp_path / "models--acme--smol-GGUF"
    for bad in ("../../x", "a/..", "acme/smol--x"):
        with pytest.raises(HubError, match="not a Hub repo id"):
            repo_cache_dir(bad, tmp_path)


@pytest.mark.parametrize(
    "commit",
    ["../../outside", "/tmp/outside", "0123456789ABCDEF0123456789abcdef01234567", "0" * 39, "0" * 41,
     "../" + "0" * 37, "0" * 40 + "\n", 123, None],
)  # fmt: skip
def test_a_commit_id_is_40_lowercase_hex(commit: object) -> None:
    with pytest.raises(HubError, match="malformed or hostile"):
        check_commit(commit)


def test_good_commit_and_sha256_pass() -> None:
    assert check_commit("0123456789abcdef0123456789abcdef01234567")
    assert check_sha256(SHA.upper()) == SHA  # blobs are named in lower case, like huggingface_hub's


@pytest.mark.parametrize(
    "sha",
    [
        "../" + "a" * 61,
        "/" + "a" * 63,
        "a" * 63,
        "a" * 65,
        "g" * 64,
        "/etc/passwd",
        "a" * 32 + "/" + "a" * 31,
    ],
)
def test_an_lfs_sha256_is_64_hex(sha: str) -> None:
    with pytest.raises(HubError, match="malformed or hostile"):
        check_sha256(sha)


@pytest.mark.parametrize(
    "revision", ["main", "v1.0", "refs/pr/3", "0123456789abcdef0123456789abcdef01234567"]
)
def test_revisions_users_give(revision: str) -> None:
    assert check_revision(revision) == revision


@pytest.mark.parametrize(
    "revision",
    ["", "/main", "main/", "../main", "refs/../../x", "a//b", ".hidden", "x.lock", "a b", "~x", "c:x"],
)
def test_revisions_that_are_paths_are_refused(revision: str) -> None:
    with pytest.raises(HubError, match="not a branch, tag or commit"):
        check_revision(revision)


@pytest.mark.parametrize(
    "path", ["../x.gguf", "/abs.gguf", "a/../../x.gguf", "a\\..\\x", "~/x.gguf", "c:x", "x\0y", ""]
)
def test_file_paths_that_escape_are_refused(path: str) -> None:
    with pytest.raises(HubError, match="outside the model folder"):
        safe_relpath(path)


def test_inside_resolves_folders_but_not_the_last_link(tmp_path: Path) -> None:
    root = tmp_path / "snap"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "jump").symlink_to(tmp_path / "elsewhere")  # a folder that leads out
    (root / "file").symlink_to(tmp_path / "blob")  # a snapshot file is a link to its blob: fine
    assert inside(root, root / "a" / "b.gguf") and inside(root, root / "file")
    for bad in (
        root / "jump" / "x.gguf",
        root / ".." / "x.gguf",
        root / "a" / ".." / ".." / "x",
        Path("/etc/x"),
    ):
        with pytest.raises(HubError, match="malformed or hostile"):
            inside(root, bad)

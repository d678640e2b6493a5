"""``tailorlm search | files | pull | list | rm`` and chatting with a pulled model by its library id,
as a user runs them: subprocesses against the local fake Hub, real files, real exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fake_hub import RepoMeta, fake_hub

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"


def tailorlm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False, env={**os.environ, **(env or {})})  # fmt: skip


def test_search_prints_repos_most_downloaded_first(smollm2_path: Path) -> None:
    repos: dict[str, dict[str, bytes | Path]] = {"a/SmolLM2-GGUF": {SMOL: smollm2_path},
                                                 "b/SmolLM2-Instruct-GGUF": {SMOL: smollm2_path}}  # fmt: skip
    meta = {
        "a/SmolLM2-GGUF": RepoMeta(downloads=5),
        "b/SmolLM2-Instruct-GGUF": RepoMeta(downloads=50, likes=3),
    }
    with fake_hub(repos, meta=meta) as url:
        out = tailorlm("search", "smollm2", "--json", env={"HF_ENDPOINT": url})
        text = tailorlm("search", "smollm2", env={"HF_ENDPOINT": url})
        none = tailorlm("search", "no-such-model", env={"HF_ENDPOINT": url})
    assert out.returncode == 0, out.stderr
    assert [m["repo_id"] for m in json.loads(out.stdout)] == ["b/SmolLM2-Instruct-GGUF", "a/SmolLM2-GGUF"]
    assert text.stdout.index("b/SmolLM2-Instruct-GGUF") < text.stdout.index("a/SmolLM2-GGUF")
    assert none.returncode == 0 and "No GGUF repos match" in none.stdout


def test_pull_list_chat_and_rm(smollm2_path: Path, gemma3_path: Path) -> None:
    repo: dict[str, bytes | Path] = {
        SMOL: smollm2_path,
        "gemma-3-270m-Q4_K_M.gguf": gemma3_path,
        "README.md": b"hi",
    }
    with fake_hub({"acme/mix-GGUF": repo}) as url:
        env = {"HF_ENDPOINT": url}
        files = tailorlm("files", "acme/mix-GGUF", "--json", "--no-bandwidth", env=env)
        assert files.returncode == 0, files.stderr
        listed = json.loads(files.stdout)["files"]
        assert {f["quant"] for f in listed} == {"Q4_1", "Q4_K_M"} and sum(
            f["recommended"] for f in listed
        ) == 1
        pulled = tailorlm("pull", "acme/mix-GGUF", "--quant", "Q4_1", "--json", "--no-bandwidth", env=env)
    assert pulled.returncode == 0, pulled.stderr
    info = json.loads(pulled.stdout)
    path = Path(info["paths"][0])
    assert info["sha256"] == [hashlib.sha256(smollm2_path.read_bytes()).hexdigest()]
    assert path.is_file() and "models--acme--mix-GGUF" in str(path)

    listing = json.loads(tailorlm("list", "--json").stdout)
    [entry] = [m for m in listing if m["id"] == info["id"]]
    assert entry["origin"] == "tailorlm" and entry["owned"] and entry["quant"] == "Q4_1" and entry["present"]

    answers = []
    for model in (info["id"], str(smollm2_path)):  # by library id, and the original file: same words
        chat = tailorlm("chat", model, "--prompt", "What is the capital of France?", "--json",
                        "--temperature", "0", "--max-tokens", "16", "--no-bandwidth")  # fmt: skip
        assert chat.returncode == 0, chat.stderr
        answers.append(json.loads(chat.stdout)["text"])
    assert answers[0] and answers[0] == answers[1]

    keep = tailorlm("rm", info["id"])
    assert keep.returncode == 0 and "stays at" in keep.stdout and path.is_file()
    assert info["id"] not in {m["id"] for m in json.loads(tailorlm("list", "--json").stdout)}


def test_rm_delete_removes_only_what_tailorlm_downloaded(smollm2_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my-models"
    folder.mkdir()
    mine = folder / "mine.Q4_1.gguf"
    os.link(smollm2_path, mine)
    added = tailorlm("list", "--add-folder", str(folder), "--json")
    assert added.returncode == 0, added.stderr
    [found] = [m for m in json.loads(added.stdout) if m["paths"] == [str(mine)]]
    assert found["origin"] == "folder" and not found["owned"]
    refused = tailorlm("rm", found["id"], "--delete")
    assert refused.returncode == 2 and "will not delete it" in refused.stderr
    assert mine.is_file()

    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}) as url:
        pulled = tailorlm("pull", "acme/smol-GGUF", "--file", SMOL, "--json", env={"HF_ENDPOINT": url})
    info = json.loads(pulled.stdout)
    blob = Path(info["paths"][0]).resolve()
    gone = tailorlm("rm", info["id"], "--delete")
    assert gone.returncode == 0, gone.stderr
    assert not blob.exists() and not Path(info["paths"][0]).exists()


def test_pull_errors_are_one_clear_line(smollm2_path: Path) -> None:
    meta = {"acme/gated-GGUF": RepoMeta(gated_token="hf_abcSECRET")}
    with fake_hub(
        {"acme/gated-GGUF": {SMOL: smollm2_path}, "acme/smol-GGUF": {SMOL: smollm2_path}}, meta=meta
    ) as url:
        env = {"HF_ENDPOINT": url}
        gated = tailorlm("pull", "acme/gated-GGUF", "--quant", "Q4_1", env=env)
        wrong = tailorlm("pull", "acme/smol-GGUF", "--quant", "Q8_0", env=env)
        missing = tailorlm("pull", "acme/nothing-GGUF", env=env)
        with_token = tailorlm(
            "pull", "acme/gated-GGUF", "--quant", "Q4_1", env={**env, "HF_TOKEN": "hf_abcSECRET"}
        )
    assert gated.returncode == 2 and "gated or private" in gated.stderr and "HF_TOKEN" in gated.stderr
    assert wrong.returncode == 2 and "No Q8_0 file" in wrong.stderr and "Q4_1" in wrong.stderr
    assert missing.returncode == 2 and "no repo" in missing.stderr.lower()
    for out in (gated, wrong, missing):
        assert "Traceback" not in out.stderr and out.stderr.count("tailorlm:") == 1
    assert with_token.returncode == 0, with_token.stderr
    assert "hf_abcSECRET" not in with_token.stdout + with_token.stderr


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if not p.is_dir()}


def test_a_hostile_hub_cannot_make_pull_write_outside_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "a" / "b" / "hub"
    data = b"GGUF" + bytes(64)
    metas = [RepoMeta(commit="../../../../outside"), RepoMeta(commit=str(tmp_path / "abs-outside")),
             RepoMeta(lfs_oids={SMOL: "../../../../" + "a" * 52}), RepoMeta(lfs_oids={SMOL: "/etc/passwd"})]  # fmt: skip
    for meta in metas:
        before = _files(tmp_path)
        with fake_hub({"acme/smol-GGUF": {SMOL: data}}, meta={"acme/smol-GGUF": meta}) as url:
            out = tailorlm("pull", "acme/smol-GGUF", "--quant", "Q4_1",
                           env={"HF_ENDPOINT": url, "HF_HUB_CACHE": str(cache)})  # fmt: skip
        assert out.returncode == 2, (meta, out.stderr)
        assert "malformed or hostile" in out.stderr and "Nothing was written" in out.stderr
        # "Pulling …" goes first; the error is one line, the last
        assert out.stderr.splitlines()[-1].startswith("tailorlm: ") and out.stderr.count("tailorlm:") == 1
        assert "Traceback" not in out.stderr and _files(tmp_path) == before
        listing = tailorlm("list", "--json", env={"HF_HUB_CACHE": str(cache)})
        assert not [m for m in json.loads(listing.stdout) if m["origin"] == "tailorlm"]


def test_a_silent_or_broken_hub_ends_each_command_with_one_line(smollm2_path: Path) -> None:
    for answer in ("silent", "html", "wrong-shape", "numbers", "redirect-loop"):
        with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, answer=answer) as url:
            env = {"HF_ENDPOINT": url, "TAILORLM_HUB_TIMEOUT_S": "0.5"}
            for args in (
                ("search", "smol"),
                ("files", "acme/smol-GGUF"),
                ("pull", "acme/smol-GGUF", "--quant", "Q4_1"),
            ):
                out = tailorlm(*args, env=env)
                assert out.returncode == 2, (answer, args, out.stdout, out.stderr)
                assert out.stderr.startswith("tailorlm: ") and out.stderr.count("\n") == 1, (
                    answer,
                    out.stderr,
                )
                assert "Traceback" not in out.stderr


def test_list_names_a_bad_file_and_still_lists_the_good_ones(smollm2_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "good.gguf").symlink_to(smollm2_path)
    (folder / "broken.gguf").write_bytes(smollm2_path.read_bytes()[:4096])  # a truncated download
    out = tailorlm("list", "--add-folder", str(folder), "--json")
    assert out.returncode == 0, out.stderr
    assert [m["paths"][0] for m in json.loads(out.stdout) if m["origin"] == "folder"] == [
        str(folder / "good.gguf")
    ]
    assert f"skipped {folder / 'broken.gguf'}: " in out.stderr


def test_advise_on_a_hostile_hub_is_one_line_within_seconds(tmp_path: Path, gemma3_path: Path) -> None:
    """``advise owner/repo`` (config.json, the file list, the shards' headers) and ``advise
    owner/repo/file.gguf`` (the GGUF header by range requests) against a silent, HTML-speaking,
    looping or trickling Hub: exit 2 with one line, never a hang."""
    import time

    from tests.core.model.test_remote import _tiny_repo

    with gemma3_path.open("rb") as f:
        gguf_head = f.read(8 << 20)  # the header and a little more: the fake Hub hashes it at once
    repos: dict[str, dict[str, bytes | Path]] = {"acme/tiny": _tiny_repo(tmp_path),
                                                 "acme/gemma-GGUF": {"gemma-3-270m-Q4_K_M.gguf": gguf_head}}  # fmt: skip
    runs = [("silent", "acme/tiny", "did not answer within 0.5 s"), ("html", "acme/tiny", "malformed or hostile"),
            ("redirect-loop", "acme/tiny", "redirected in a loop"), ("trickle", "acme/tiny", "too slowly"),
            ("trickle", "acme/gemma-GGUF/gemma-3-270m-Q4_K_M.gguf", "too slowly")]  # fmt: skip
    for answer, model, expected in runs:
        with fake_hub(repos, answer=answer) as url:
            t0 = time.monotonic()
            out = tailorlm("advise", model, "--json", "--no-bandwidth",
                           env={"HF_ENDPOINT": url, "TAILORLM_HUB_TIMEOUT_S": "0.5"})  # fmt: skip
            elapsed = time.monotonic() - t0
        assert out.returncode == 2, (answer, model, out.stdout, out.stderr)
        assert out.stderr.startswith("tailorlm: ") and out.stderr.count("\n") == 1, (answer, out.stderr)
        assert expected in out.stderr and "Traceback" not in out.stderr, (answer, out.stderr)
        assert elapsed < 15.0, f"{answer} {model}: {elapsed:.1f} s"  # CLI start-up included


OFFLINE_LINE = "tailorlm: You're offline — your local models still work."
CLASS_NAMES = ("Error", "gaierror", "Errno", "Exception", "urllib", "Traceback")


def test_search_and_pull_offline_say_so_in_one_line_within_two_seconds() -> None:
    import time

    from tests.fake_hub import unused_port

    nobody = f"http://127.0.0.1:{unused_port()}"
    runs = [(("search", "smol"), "http://tailorlm-offline.invalid", "does not resolve"),  # .invalid: RFC 2606
            (("pull", "acme/smol-GGUF", "--quant", "Q4_K_M"), "http://tailorlm-offline.invalid", "does not resolve"),
            (("pull", "acme/smol-GGUF", "--no-bandwidth"), nobody, "connection was refused"),  # the advisor's pick
            (("files", "acme/smol-GGUF", "--no-bandwidth"), nobody, "connection was refused")]  # fmt: skip
    for args, endpoint, why in runs:
        t0 = time.perf_counter()
        out = tailorlm(*args, env={"HF_ENDPOINT": endpoint})
        took_s = time.perf_counter() - t0
        print(f"\n`tailorlm {' '.join(args)}` offline: {took_s:.2f} s (Python's start included)")
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert lines[0].startswith(OFFLINE_LINE) and why in lines[0] and out.stdout == ""
        assert not any(name in out.stderr for name in CLASS_NAMES), out.stderr
        assert took_s < 2.0, took_s


def test_hf_hub_offline_keeps_every_command_off_the_hub(smollm2_path: Path) -> None:
    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, requests=requests) as url:
        out = tailorlm("search", "smol", env={"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "1"})
        pulled = tailorlm(
            "pull", "acme/smol-GGUF", "--quant", "Q4_1", env={"HF_ENDPOINT": url, "HF_HUB_OFFLINE": "1"}
        )
    for run in (out, pulled):
        assert run.returncode == 2 and run.stderr.startswith(OFFLINE_LINE) and "HF_HUB_OFFLINE" in run.stderr
    assert requests == []

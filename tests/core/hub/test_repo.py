"""The Hub half of the library: search, listing, pulling real GGUF files into the shared Hugging Face
cache — resumed, verified, cancelled, refused — against the local fake Hub (``tests/fake_hub.py``)."""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import pytest

from app.core.errors import Cancelled, HubError, ModelNotFoundError
from app.core.hub.download import DownloadCorruptError
from app.core.hub.repo import list_gguf_files, search_models, select_file
from app.core.library.pull import pull_model as pull
from app.core.library.registry import Library
from app.core.paths import hf_cache_dir
from tests.fake_hub import RepoMeta, fake_hub
from tests.synthetic import split_gguf

SMOL = "SmolLM2-135M-Instruct-Q4_1.gguf"


def _endpoint(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", url)  # read at call time by app.core.hub.http


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def split_parts(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return split_gguf(smollm2_path, tmp_path_factory.mktemp("split"), 2, stem="SmolLM2-135M-Instruct-Q4_1")


def test_search_finds_gguf_repos_most_downloaded_first(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    repos: dict[str, dict[str, bytes | Path]] = {
        "acme/SmolLM2-135M-GGUF": {SMOL: smollm2_path},
        "big/SmolLM2-135M-Instruct-GGUF": {SMOL: smollm2_path},
        "acme/SmolLM2-135M": {"config.json": b"{}"},  # not a GGUF repo
        "acme/Other-GGUF": {"x-Q8_0.gguf": smollm2_path},
    }
    meta = {
        "acme/SmolLM2-135M-GGUF": RepoMeta(downloads=10),
        "big/SmolLM2-135M-Instruct-GGUF": RepoMeta(downloads=900),
    }
    with fake_hub(repos, meta=meta) as url:
        _endpoint(monkeypatch, url)
        found = search_models("smollm2 135m")
    assert [m.repo_id for m in found] == ["big/SmolLM2-135M-Instruct-GGUF", "acme/SmolLM2-135M-GGUF"]
    assert found[0].downloads == 900


def test_pull_lands_in_the_shared_hf_cache_verified_and_registered(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    from huggingface_hub import hf_hub_download, scan_cache_dir

    requests: list[str] = []
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, requests=requests) as url:
        _endpoint(monkeypatch, url)
        files = list_gguf_files("acme/smol-GGUF")
        rf = select_file(files, quant="q4_1")
        seen = []
        lib = Library()
        paths, entry = pull("acme/smol-GGUF", rf, library=lib, on_progress=seen.append)
    assert entry is not None and entry.owned and entry.origin == "tailorlm" and entry.quant == "Q4_1"
    assert paths[0].read_bytes() == smollm2_path.read_bytes()
    assert paths[0].is_symlink() and paths[0].resolve().name == _sha(
        smollm2_path
    )  # blob named by its SHA-256
    assert seen[-1].done_bytes == seen[-1].total_bytes == smollm2_path.stat().st_size
    # Other tools see it: huggingface_hub finds the file offline in the same cache.
    cache = hf_cache_dir()
    again = hf_hub_download("acme/smol-GGUF", SMOL, cache_dir=cache, local_files_only=True)
    assert Path(again) == paths[0]
    repos = {r.repo_id: r for r in scan_cache_dir(cache).repos}
    assert repos["acme/smol-GGUF"].size_on_disk == smollm2_path.stat().st_size
    # It survives a restart of the library, and a second pull downloads nothing.
    assert Library().find(entry.id).path == paths[0]
    n = len(requests)
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, requests=requests) as url:
        _endpoint(monkeypatch, url)
        pull("acme/smol-GGUF", rf, library=lib)
    assert not any("/cdn-lfs/" in r for r in requests[n:])


def test_dropped_connection_resumes_and_a_split_model_pulls_whole_and_loads(
    monkeypatch: pytest.MonkeyPatch, split_parts: list[Path], smollm2_path: Path
) -> None:
    from app.engine import protocol as P
    from app.engine.client import EngineClient

    repo = {p.name: p for p in split_parts}
    requests: list[str] = []
    with fake_hub(
        {"acme/smol-split-GGUF": repo}, drop_after={split_parts[1].name: 5_000_000}, requests=requests
    ) as url:
        _endpoint(monkeypatch, url)
        files = list_gguf_files("acme/smol-split-GGUF")
        assert len(files) == 1 and files[0].file.paths == tuple(p.name for p in split_parts)
        paths, entry = pull("acme/smol-split-GGUF", files[0], library=Library())
    assert [_sha(p) for p in paths] == [_sha(p) for p in split_parts]
    cdn = [r for r in requests if r.startswith("GET /cdn-lfs/")]
    assert len(cdn) == 3 and cdn[-1].endswith("bytes=5000000-")  # part 2 resumed, not restarted
    assert entry is not None and entry.paths == tuple(paths)
    texts = []
    for model_path in (paths[0], smollm2_path):  # the pulled split model writes what the original writes
        with EngineClient() as engine:
            engine.load(P.Load(model_path=str(model_path), n_ctx=256, n_threads=2))
            greedy = P.Sampling(temperature=0, max_tokens=6, ignore_eos=True)
            texts.append("".join(e.text for e in engine.generate("The capital of France is", greedy)
                                 if isinstance(e, P.TokenChunk)))  # fmt: skip
    assert texts[0] and texts[0] == texts[1]


def test_cancel_registers_nothing_and_the_next_pull_resumes(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    cancel = threading.Event()
    requests: list[str] = []

    def stop_early(p: object) -> None:
        if p.done_bytes > 20_000_000:  # type: ignore[attr-defined]
            cancel.set()

    # paced at 200 MB/s so progress (every 0.1 s) reports before the file is complete
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, requests=requests, rate_bytes_s=200e6) as url:
        _endpoint(monkeypatch, url)
        rf = list_gguf_files("acme/smol-GGUF")[0]
        with pytest.raises(Cancelled):
            pull("acme/smol-GGUF", rf, library=Library(), on_progress=stop_early, cancel=cancel)
        assert Library().models() == [] or all(m.origin != "tailorlm" for m in Library().models())
        assert not list(hf_cache_dir().rglob("snapshots/*/*.gguf"))  # no half model visible to other tools
        paths, entry = pull("acme/smol-GGUF", rf, library=Library())
    assert _sha(paths[0]) == _sha(smollm2_path) and entry is not None
    resumed = [r for r in requests if r.startswith("GET /cdn-lfs/")][-1]
    assert "bytes=" in resumed and int(resumed.rsplit("bytes=", 1)[1].rstrip("-")) > 20_000_000


def test_a_corrupted_byte_is_caught_and_nothing_is_registered(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path, tmp_path: Path
) -> None:
    served = tmp_path / SMOL
    shutil.copyfile(smollm2_path, served)
    with fake_hub({"acme/smol-GGUF": {SMOL: served}}) as url:
        _endpoint(monkeypatch, url)
        rf = list_gguf_files("acme/smol-GGUF")[0]  # the listing carries the good SHA-256
        with served.open("r+b") as f:  # then a byte flips on the way (CDN, disk, network)
            f.seek(40_000_000)
            b = f.read(1)
            f.seek(40_000_000)
            f.write(bytes([b[0] ^ 0xFF]))
        with pytest.raises(DownloadCorruptError, match="SHA-256"):
            pull("acme/smol-GGUF", rf, library=Library())
    assert not [m for m in Library().models() if m.origin == "tailorlm"]
    assert not [p for p in hf_cache_dir().rglob("*") if p.is_file()]  # the bad bytes are gone


def test_gated_repo_needs_the_token_which_never_reaches_the_cdn(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    token = "hf_secretTOKEN123"
    requests: list[str] = []
    meta = {"acme/gated-GGUF": RepoMeta(gated_token=token)}
    with fake_hub({"acme/gated-GGUF": {SMOL: smollm2_path}}, meta=meta, requests=requests) as url:
        _endpoint(monkeypatch, url)
        rf = list_gguf_files("acme/gated-GGUF")[0]
        with pytest.raises(HubError, match="gated or private") as err:
            pull("acme/gated-GGUF", rf, library=Library())
        assert "HF_TOKEN" in (err.value.hint or "")
        monkeypatch.setenv("HF_TOKEN", token)
        paths, _ = pull("acme/gated-GGUF", rf, library=Library())
    assert _sha(paths[0]) == _sha(smollm2_path)
    assert any("/resolve/" in r and r.endswith("[auth]") for r in requests)
    assert not any(r.startswith("GET /cdn-lfs/") and r.endswith("[auth]") for r in requests)


def test_file_names_that_escape_the_cache_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    evil = {"../../../evil-Q4_K_M.gguf": b"GGUF" + b"\0" * 64, "sub/../../x-Q8_0.gguf": b"GGUF" + b"\0" * 64}
    with fake_hub({"acme/evil-GGUF": evil}) as url:  # type: ignore[dict-item]
        _endpoint(monkeypatch, url)
        files = list_gguf_files("acme/evil-GGUF")
        for quant in ("Q4_K_M", "Q8_0"):
            with pytest.raises(HubError, match="outside the model folder"):
                pull("acme/evil-GGUF", select_file(files, quant=quant), library=Library())
    assert not list(hf_cache_dir().parent.rglob("*evil*")) and not list(hf_cache_dir().rglob("*.gguf"))


def test_unknown_quant_and_file_names_say_what_there_is(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}) as url:
        _endpoint(monkeypatch, url)
        files = list_gguf_files("acme/smol-GGUF")
    with pytest.raises(ModelNotFoundError) as err:
        select_file(files, quant="Q8_0")
    assert "Q4_1" in (err.value.hint or "")
    with pytest.raises(ModelNotFoundError):
        select_file(files, filename="nope.gguf")


def test_a_file_bigger_than_the_free_disk_is_refused_before_a_byte(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path
) -> None:
    meta = {"acme/huge-GGUF": RepoMeta(claimed_sizes={SMOL: 50 * 2**40})}  # 50 TiB
    requests: list[str] = []
    with fake_hub({"acme/huge-GGUF": {SMOL: smollm2_path}}, meta=meta, requests=requests) as url:
        _endpoint(monkeypatch, url)
        rf = list_gguf_files("acme/huge-GGUF")[0]
        with pytest.raises(HubError, match=r"Not enough disk space: the download needs 50\.0 TiB"):
            pull("acme/huge-GGUF", rf, library=Library())
    assert not any("/cdn-lfs/" in r for r in requests)


def test_a_disk_that_fills_up_mid_download_gives_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, smollm2_path: Path, small_disk: Path
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(small_disk / "hub"))
    # The listing under-reports the size, so the up-front check passes and the disk really fills.
    meta = {"acme/smol-GGUF": RepoMeta(claimed_sizes={SMOL: 10_000_000})}
    with fake_hub({"acme/smol-GGUF": {SMOL: smollm2_path}}, meta=meta) as url:
        _endpoint(monkeypatch, url)
        rf = list_gguf_files("acme/smol-GGUF")[0]
        with pytest.raises(HubError, match="disk is full"):
            pull("acme/smol-GGUF", rf, library=Library())
        with pytest.raises(HubError, match="Not enough disk space"):  # the retry knows better now
            pull("acme/smol-GGUF", select_file([rf.__class__(rf.file, rf.sha256, (smollm2_path.stat().st_size,))],
                                               quant="Q4_1"), library=Library())  # fmt: skip
    assert not [m for m in Library().models() if m.origin == "tailorlm"]

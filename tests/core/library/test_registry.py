"""The model library: discovery in real on-disk layouts (HF cache, LM Studio, Ollama, user folders),
the registry file, and removal. Every test passes its own ScanRoots, so no real folder is scanned.

The discovery test links the real model files. The others write "slim" copies: the real model's
metadata (minus the tokenizer) and tensor table, with the weights a sparse hole of the right size,
because parsing a 262k-token vocabulary costs ~0.4 s per header and the library only reads headers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from app.core.errors import CorruptModelError, ModelNotFoundError, NotAGGUFError, TailorError
from app.core.library.registry import Library, LibraryModel, ScanRoots, paths
from app.core.library import registry as library
from app.core.model.gguf_header import ArrayLength, GGUFHeader, read_gguf_file
from app.core.model.source import model_from_gguf

NO_ROOTS = ScanRoots(hf_cache=None)


@pytest.fixture(scope="session")
def headers(smollm2_path: Path, gemma3_path: Path) -> dict[str, GGUFHeader]:
    return {"smollm2": read_gguf_file(smollm2_path), "gemma3": read_gguf_file(gemma3_path)}


def _gguf_type(value: Any) -> gguf.GGUFValueType:
    if isinstance(value, bool):
        return gguf.GGUFValueType.BOOL
    if isinstance(value, int):
        return gguf.GGUFValueType.UINT32 if 0 <= value < 2**32 else gguf.GGUFValueType.INT64
    if isinstance(value, float):
        return gguf.GGUFValueType.FLOAT32
    return gguf.GGUFValueType.STRING


def _write_like(header: GGUFHeader, path: Path, *, part: int = 1, n_parts: int = 1) -> Path:
    """A slim GGUF with ``header``'s metadata and its share of the tensor table (split parts carry
    ``split.*`` keys, as llama.cpp's gguf-split writes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), arch=header.architecture)
    for key, value in header.metadata.items() if part == 1 else []:
        skip = key.startswith("tokenizer.") or key == "general.architecture"
        if skip or isinstance(value, ArrayLength) or value == []:
            continue
        sub = _gguf_type(value[0]) if isinstance(value, list) else None
        w.add_key_value(key, value, gguf.GGUFValueType.ARRAY if sub else _gguf_type(value), sub_type=sub)
    if n_parts > 1:
        w.add_uint16("split.no", part - 1)
        w.add_uint16("split.count", n_parts)
        w.add_int32("split.tensors.count", len(header.tensors))
    per = -(-len(header.tensors) // n_parts)
    data = 0
    for t in header.tensors[(part - 1) * per : part * per]:
        qtype = gguf.GGMLQuantizationType[t.type_name]
        shape = gguf.quant_shape_to_byte_shape(tuple(reversed(t.shape)), qtype)
        w.add_tensor_info(t.name, shape, np.dtype(np.uint8), t.n_bytes, raw_dtype=qtype)
        data += -(-t.n_bytes // 32) * 32
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with path.open("r+b") as f:  # sparse: the right size, no bytes written
        f.truncate(path.stat().st_size + 32 + data)
    return path


def _link(src: Path, dst: Path) -> Path:
    """A hard link (a copy across file systems): deleting it never touches the real model."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return dst
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def _hf_snapshot(cache: Path, repo: str, commit: str, files: dict[str, Path], *, main: bool = True) -> Path:
    """The hub cache layout: blobs/<etag>, snapshots/<commit>/<file> → ../../blobs/<etag>, refs/main."""
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    for name, src in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(str(src).encode()).hexdigest()  # one blob per content
        if not blob.exists():
            _link(src, blob)
        link = repo_dir / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if main:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / "main").write_text(commit)
    return repo_dir / "snapshots" / commit


def _ollama_pull(root: Path, blob_src: Path, name: str, digest: str) -> Path:
    """What `ollama pull` leaves: a manifest naming layers by digest, and blobs/sha256-<hex>."""
    registry, namespace, model, tag = name.split("/")
    blob = _link(blob_src, root / "blobs" / f"sha256-{digest}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": "sha256:" + "1" * 64,
        },
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "2" * 64, "size": 1},
        ],
    }
    path = root / "manifests" / registry / namespace / model / tag
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return blob


def _by_origin(models: list[LibraryModel]) -> dict[str, LibraryModel]:
    assert len({m.origin for m in models}) == len(models), [m.id for m in models]
    return {m.origin: m for m in models}


def test_every_source_is_found_with_its_facts(
    tmp_path: Path, smollm2_path: Path, gemma3_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    hf = tmp_path / "hf"
    gemma_file = "gemma-3-270m-it-Q4_K_M.gguf"
    snap = _hf_snapshot(
        hf, "unsloth/gemma-3-270m-it-GGUF", "c1", {gemma_file: gemma3_path, "mmproj-F16.gguf": smollm2_path}
    )
    _hf_snapshot(hf, "unsloth/gemma-3-270m-it-GGUF", "a0", {gemma_file: gemma3_path}, main=False)  # same blob
    (snap.parent.parent / "blobs" / "0123.incomplete").write_bytes(b"GGUF")  # a download in progress
    lms = tmp_path / "lmstudio"
    lms_file = _link(
        smollm2_path,
        lms / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_1.gguf",
    )
    ollama = tmp_path / "ollama"
    digest = hashlib.sha256(smollm2_path.read_bytes()).hexdigest()
    blob = _ollama_pull(ollama, smollm2_path, "registry.ollama.ai/library/smollm2/135m", digest)
    no_model = ollama / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    no_model.parent.mkdir(parents=True)
    no_model.write_text('{"layers": []}')
    folder = tmp_path / "mine"
    parts = [
        _write_like(headers["smollm2"], folder / "deep" / f"tiny-{i:05d}-of-00002.gguf", part=i, n_parts=2)
        for i in (1, 2)
    ]
    (folder / "half.gguf.part").write_bytes(b"GGUF")
    lib = Library(tmp_path / "library.json", roots=ScanRoots(hf, (lms,), (ollama,)))

    assert [m.paths for m in lib.add_folder(folder)] == [tuple(parts)]
    found = _by_origin(lib.models())

    assert set(found) == {"hf_cache", "lmstudio", "ollama", "folder"}
    hf_model = found["hf_cache"]
    assert hf_model.paths == (snap / gemma_file,)  # the snapshot refs/main names, though a0 sorts first
    assert (hf_model.id, hf_model.repo, hf_model.quant, hf_model.arch) == (
        "gemma-3-270m-it-q4_k_m",
        "unsloth/gemma-3-270m-it-GGUF",
        "Q4_K_M",
        "gemma3",
    )
    assert (hf_model.size_bytes, hf_model.n_layers, hf_model.context_length) == (
        gemma3_path.stat().st_size,
        18,
        32768,
    )
    assert hf_model.name == "Gemma 3 270m" and not hf_model.owned and hf_model.present
    lms_model = found["lmstudio"]
    assert (lms_model.paths, lms_model.repo) == ((lms_file,), "lmstudio-community/SmolLM2-135M-Instruct-GGUF")
    assert (lms_model.quant, lms_model.arch, lms_model.n_layers) == ("Q4_1", "llama", 30)
    assert lms_model.size_bytes == smollm2_path.stat().st_size
    ollama_model = found["ollama"]
    assert (ollama_model.id, ollama_model.paths, ollama_model.repo) == ("ollama:smollm2:135m", (blob,), None)
    assert ollama_model.quant == "Q4_1"  # from the header: the blob's name says nothing
    assert 134e6 < (ollama_model.n_params or 0) < 135e6  # SmolLM2-135M
    split = found["folder"]
    assert (split.id, split.paths, split.quant) == ("tiny", tuple(parts), "Q4_1")
    assert split.size_bytes == sum(p.stat().st_size for p in parts)
    assert split.n_params == sum(t.n_elements for t in headers["smollm2"].tensors)  # both parts' tensors


def test_ollama_models_from_other_registries_are_named_by_their_source(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    src = _write_like(headers["gemma3"], tmp_path / "gemma.gguf")
    ollama = tmp_path / "ollama"
    _ollama_pull(ollama, src, "hf.co/unsloth/gemma-3-270m-it-GGUF/Q4_K_M", "a" * 64)
    _ollama_pull(
        ollama, tmp_path / "gemma.gguf", "registry.ollama.ai/library/gemma3/270m", "a" * 64
    )  # the same blob
    (ollama / "blobs" / f"sha256-{'b' * 64}").write_bytes(b"not a model")
    _ollama_pull(
        ollama, ollama / "blobs" / f"sha256-{'b' * 64}", "registry.ollama.ai/library/junk/latest", "b" * 64
    )

    [model] = Library(tmp_path / "library.json", roots=ScanRoots(None, (), (ollama,))).scan()

    assert (model.id, model.repo, model.arch) == (
        "ollama:hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M",
        "unsloth/gemma-3-270m-it-GGUF",
        "gemma3",
    )


def test_headers_are_read_once_and_again_when_a_file_changes(
    tmp_path: Path, headers: dict[str, GGUFHeader], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []

    def counting(path: Path) -> Any:
        reads.append(path)
        return model_from_gguf(path)

    monkeypatch.setattr(library, "model_from_gguf", counting)
    folder = tmp_path / "models"
    a = _write_like(headers["smollm2"], folder / "a.gguf")
    _write_like(headers["gemma3"], folder / "b.gguf")
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=NO_ROOTS)

    assert len(lib.add_folder(folder)) == 2 and len(reads) == 2
    lib.scan()
    Library(registry, roots=NO_ROOTS).scan()  # the cache is in the registry file, not in memory
    assert len(reads) == 2

    a.unlink()
    _write_like(headers["gemma3"], a)
    lib.scan()
    assert reads[2:] == [a]
    assert lib.find("a").arch == "gemma3"


def test_bad_files_are_skipped_by_scans_and_refused_by_add(
    tmp_path: Path, headers: dict[str, GGUFHeader], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    good = _write_like(headers["smollm2"], folder / "good.gguf")
    (folder / "notes.gguf").write_text("not a model")
    with good.open("rb") as f:
        (folder / "cut.gguf").write_bytes(f.read(4096))  # the header ends early
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)

    with caplog.at_level(logging.WARNING, logger="app.core.library.registry"):
        assert [m.path for m in lib.add_folder(folder)] == [good]
    assert "notes.gguf" in caplog.text and "cut.gguf" in caplog.text
    with pytest.raises(NotAGGUFError):
        lib.add([folder / "notes.gguf"], origin="file", owned=False)
    with pytest.raises(CorruptModelError, match="ends early"):
        lib.add([folder / "cut.gguf"], origin="file", owned=False)
    with pytest.raises(ModelNotFoundError):
        lib.add([folder / "gone.gguf"], origin="file", owned=False)
    assert [m.path for m in lib.models()] == [good]


def test_the_registry_survives_a_restart(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    file = _write_like(headers["smollm2"], tmp_path / "downloads" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    folder = tmp_path / "models"
    _write_like(headers["gemma3"], folder / "gemma.gguf")
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=NO_ROOTS)
    provenance = {"source": "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "revision": "c1"}
    model = lib.add(
        [file],
        origin="tailorlm",
        owned=True,
        repo=provenance["source"],
        sha256="ab" * 32,
        provenance=provenance,
    )
    lib.add_folder(folder)

    again = Library(registry, roots=NO_ROOTS)
    assert again.models() == lib.models() and len(again.models()) == 2
    assert again.find(model.id) == model and again.folders() == [folder.resolve()]
    assert (model.id, model.quant, model.owned, model.provenance) == (
        "smollm2-135m-instruct-q4_1",
        "Q4_1",
        True,
        provenance,
    )

    updated = again.add([file], origin="tailorlm", owned=True)  # adding again updates, keeps what it knew
    assert (updated.id, updated.repo, updated.sha256, updated.added) == (
        model.id,
        model.repo,
        model.sha256,
        model.added,
    )
    assert len(again.models()) == 2


@pytest.mark.parametrize("damage", ['{"models": [{"id": ', '{"models": [{"id": "x"}]}', "\xff\xfe"])
def test_a_damaged_registry_is_set_aside_and_the_library_still_works(
    tmp_path: Path, headers: dict[str, GGUFHeader], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    registry = tmp_path / "library.json"
    registry.write_text(damage, encoding="latin-1")
    lib = Library(registry, roots=NO_ROOTS)

    with caplog.at_level(logging.WARNING, logger="app.core.library.registry"):
        assert lib.models() == []
    [backup] = tmp_path.glob("library.json.corrupt-*")
    assert backup.read_text(encoding="latin-1") == damage and "library.json" in caplog.text

    model = lib.add([_write_like(headers["smollm2"], tmp_path / "m.gguf")], origin="file", owned=False)
    assert json.loads(registry.read_text())["models"][0]["id"] == model.id
    assert Library(registry, roots=NO_ROOTS).models() == [model]


def test_removing_a_found_model_hides_it_from_later_scans(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    lms = tmp_path / "lmstudio"
    file = _write_like(headers["smollm2"], lms / "org" / "repo" / "smol-Q4_1.gguf")
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=ScanRoots(None, (lms,)))
    [model] = lib.scan()

    assert lib.remove("smol") == model
    assert file.exists() and lib.models() == []
    assert lib.scan() == [] and Library(registry, roots=ScanRoots(None, (lms,))).scan() == []

    back = lib.add([file], origin="file", owned=False)  # adding it by hand brings it back
    assert back.id == model.id and lib.scan() == [back]


def test_deleting_a_model_we_do_not_own_is_refused(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    lms = tmp_path / "lmstudio"
    file = _write_like(headers["smollm2"], lms / "org" / "repo" / "smol-Q4_1.gguf")
    picked = _write_like(headers["gemma3"], tmp_path / "picked.gguf")
    lib = Library(tmp_path / "library.json", roots=ScanRoots(None, (lms,)))
    lib.add([picked], origin="file", owned=False)
    before = lib.scan()

    for ref, path in (("smol", file), ("picked", picked)):
        with pytest.raises(TailorError, match="did not create") as err:
            lib.remove(ref, delete_files=True)
        assert str(path) in str(err.value) and path.exists()
    assert lib.models() == before


def test_deleting_an_owned_hf_cache_model_removes_its_link_and_unshared_blob(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    src = tmp_path / "src"
    smol, gem = (
        _write_like(headers["smollm2"], src / "smol.gguf"),
        _write_like(headers["gemma3"], src / "gem.gguf"),
    )
    hf = tmp_path / "hf"
    new = _hf_snapshot(hf, "org/a", "c1", {"smol-Q4_1.gguf": smol, "sub/gem-Q4_K_M.gguf": gem})
    old = _hf_snapshot(hf, "org/a", "c0", {"smol-Q4_1.gguf": smol}, main=False)
    other = _hf_snapshot(hf, "org/b", "c9", {"smol-Q4_1.gguf": smol})
    blobs = hf / "models--org--a" / "blobs"
    lib = Library(tmp_path / "library.json", roots=ScanRoots(hf))
    lib.scan()
    for link in (new / "smol-Q4_1.gguf", new / "sub" / "gem-Q4_K_M.gguf"):
        lib.add([link], origin="tailorlm", owned=True, repo="org/a")
    registered = [m for m in lib.scan() if m.repo == "org/a"]
    assert [m.origin for m in registered] == ["tailorlm", "tailorlm"]  # c0's link is c1's blob: one model

    gem_blob = (new / "sub" / "gem-Q4_K_M.gguf").resolve()
    lib.remove("gem", delete_files=True)
    assert not gem_blob.exists() and not (new / "sub").exists() and new.exists()

    smol_blob = (new / "smol-Q4_1.gguf").resolve()
    lib.remove("smol-q4_1", delete_files=True)
    assert not new.exists() and smol_blob.exists()  # the c0 snapshot still links to it
    assert (old / "smol-Q4_1.gguf").is_file() and (other / "smol-Q4_1.gguf").is_file()

    lib.add([old / "smol-Q4_1.gguf"], origin="tailorlm", owned=True)
    lib.remove("smol-q4_1", delete_files=True)
    assert list(blobs.iterdir()) == [] and (hf / "models--org--a" / "snapshots").is_dir()
    assert (other / "smol-Q4_1.gguf").is_file() and smol.exists() and gem.exists()
    assert [m.repo for m in lib.scan()] == ["org/b"]


def test_find_by_id_prefix_file_name_and_path(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    folder = tmp_path / "models"
    a = _write_like(headers["smollm2"], folder / "a" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    b = _write_like(headers["smollm2"], folder / "b" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    _write_like(headers["gemma3"], folder / "gemma-3-270m-it-Q4_K_M.gguf")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)
    lib.add_folder(folder)
    ids = [m.id for m in lib.scan()]
    assert ids[0] == "gemma-3-270m-it-q4_k_m" and ids[1] == "smollm2-135m-instruct-q4_1"
    assert ids[2].startswith("smollm2-135m-instruct-q4_1-") and [m.id for m in lib.scan()] == ids  # stable

    assert lib.find("smollm2-135m-instruct-q4_1").path == a  # an exact id beats a prefix
    assert lib.find("GEMMA").id == ids[0]
    assert lib.find(ids[2]).path == b
    assert lib.find(str(b)).path == b
    assert lib.find("gemma-3-270m-it-Q4_K_M.gguf").id == ids[0]
    with pytest.raises(ModelNotFoundError, match="matches 2") as err:
        lib.find("SmolLM2-135M-Instruct-Q4_1.gguf")
    assert ids[1] in str(err.value.hint) and ids[2] in str(err.value.hint)
    with pytest.raises(ModelNotFoundError, match="matches 2"):
        lib.find("smollm2")
    with pytest.raises(ModelNotFoundError, match="No model") as err:
        lib.find("gemma-3-270m-it-q4_k_s")
    assert ids[0] in str(err.value.hint)
    with pytest.raises(ModelNotFoundError):
        lib.find("")


def test_a_registered_model_whose_file_vanished_is_flagged(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    file = _write_like(headers["smollm2"], tmp_path / "dl" / "smol.gguf")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)
    model = lib.add([file], origin="tailorlm", owned=True)
    file.unlink()

    [listed] = lib.scan()
    assert listed == model and not listed.present and lib.find("smol") == model
    assert lib.remove("smol", delete_files=True) == model and lib.models() == []


def test_folders_are_walked_safely_remembered_and_forgotten(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    folder = tmp_path / "models"
    file = _write_like(headers["smollm2"], folder / "smol.gguf")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    _write_like(headers["gemma3"], folder.joinpath(*"1234567") / "too-deep.gguf")
    _write_like(headers["gemma3"], folder / ".hidden" / "gemma.gguf")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)

    assert [m.path for m in lib.add_folder(folder)] == [file]
    assert lib.folders() == [folder.resolve()]
    lib.remove_folder(folder)
    assert lib.folders() == [] and lib.models() == [] and file.exists()
    with pytest.raises(ModelNotFoundError):
        lib.remove_folder(folder)
    with pytest.raises(ModelNotFoundError):
        lib.add_folder(tmp_path / "nowhere")


def test_concurrent_writers_lose_nothing(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    files = [_write_like(headers["smollm2"], tmp_path / f"m{i}.gguf") for i in range(8)]
    registry = tmp_path / "library.json"

    def add(file: Path) -> LibraryModel:
        return Library(registry, roots=NO_ROOTS).add([file], origin="file", owned=False)

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(add, files))
    assert sorted(m.id for m in Library(registry, roots=NO_ROOTS).models()) == sorted(m.id for m in added)
    assert len(added) == 8


def test_default_roots_follow_settings_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".lmstudio" / "models").mkdir(parents=True)
    elsewhere = tmp_path / "lmstudio-models"
    elsewhere.mkdir()
    (home / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(elsewhere)}))
    ollama = tmp_path / "ollama-models"
    ollama.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))

    roots = ScanRoots.default()

    assert roots.lmstudio == (home / ".lmstudio" / "models", elsewhere)  # ~/.cache/lm-studio does not exist
    assert roots.ollama[0] == ollama and home / ".ollama" / "models" not in roots.ollama
    assert roots.hf_cache == paths.hf_cache_dir()

"""Discovery in real on-disk layouts: the HF cache, LM Studio, Ollama's blob store, user folders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.core import paths
from app.core.errors import ModelNotFoundError
from app.core.library.registry import Library, ScanRoots
from app.core.model.gguf_header import GGUFHeader
from tests.core.library.layouts import NO_ROOTS, by_origin, hf_snapshot, link_file, ollama_pull, write_like


def test_every_source_is_found_with_its_facts(
    tmp_path: Path, smollm2_path: Path, gemma3_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    hf = tmp_path / "hf"
    gemma_file = "gemma-3-270m-it-Q4_K_M.gguf"
    snap = hf_snapshot(
        hf, "unsloth/gemma-3-270m-it-GGUF", "c1", {gemma_file: gemma3_path, "mmproj-F16.gguf": smollm2_path}
    )
    hf_snapshot(hf, "unsloth/gemma-3-270m-it-GGUF", "a0", {gemma_file: gemma3_path}, main=False)  # same blob
    (snap.parent.parent / "blobs" / "0123.incomplete").write_bytes(b"GGUF")  # a download in progress
    lms = tmp_path / "lmstudio"
    lms_file = link_file(
        smollm2_path,
        lms / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_1.gguf",
    )
    ollama = tmp_path / "ollama"
    digest = hashlib.sha256(smollm2_path.read_bytes()).hexdigest()
    blob = ollama_pull(ollama, smollm2_path, "registry.ollama.ai/library/smollm2/135m", digest)
    no_model = ollama / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest"
    no_model.parent.mkdir(parents=True)
    no_model.write_text('{"layers": []}')
    folder = tmp_path / "mine"
    parts = [
        write_like(headers["smollm2"], folder / "deep" / f"tiny-{i:05d}-of-00002.gguf", part=i, n_parts=2)
        for i in (1, 2)
    ]
    (folder / "half.gguf.part").write_bytes(b"GGUF")
    lib = Library(tmp_path / "library.json", roots=ScanRoots(hf, (lms,), (ollama,)))

    assert [m.paths for m in lib.add_folder(folder)] == [tuple(parts)]
    found = by_origin(lib.models())

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
    assert hf_model.name == "Gemma 3 270M it"  # the file's name, not general.name "Gemma 3 270m"
    assert not hf_model.owned and hf_model.present
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
    src = write_like(headers["gemma3"], tmp_path / "gemma.gguf")
    ollama = tmp_path / "ollama"
    ollama_pull(ollama, src, "hf.co/unsloth/gemma-3-270m-it-GGUF/Q4_K_M", "a" * 64)
    ollama_pull(
        ollama, tmp_path / "gemma.gguf", "registry.ollama.ai/library/gemma3/270m", "a" * 64
    )  # the same blob
    (ollama / "blobs" / f"sha256-{'b' * 64}").write_bytes(b"not a model")
    ollama_pull(
        ollama, ollama / "blobs" / f"sha256-{'b' * 64}", "registry.ollama.ai/library/junk/latest", "b" * 64
    )

    [model] = Library(tmp_path / "library.json", roots=ScanRoots(None, (), (ollama,))).scan()

    assert (model.id, model.repo, model.arch) == (
        "ollama:hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M",
        "unsloth/gemma-3-270m-it-GGUF",
        "gemma3",
    )


def test_folders_are_walked_safely_remembered_and_forgotten(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    folder = tmp_path / "models"
    file = write_like(headers["smollm2"], folder / "smol.gguf")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    write_like(headers["gemma3"], folder.joinpath(*"1234567") / "too-deep.gguf")
    write_like(headers["gemma3"], folder / ".hidden" / "gemma.gguf")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)

    assert [m.path for m in lib.add_folder(folder)] == [file]
    assert lib.folders() == [folder.resolve()]
    lib.remove_folder(folder)
    assert lib.folders() == [] and lib.models() == [] and file.exists()
    with pytest.raises(ModelNotFoundError):
        lib.remove_folder(folder)
    with pytest.raises(ModelNotFoundError):
        lib.add_folder(tmp_path / "nowhere")


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

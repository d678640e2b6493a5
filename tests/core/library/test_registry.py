"""The library's operations: find by id, path or name; remove, hide from scans, delete only what we own."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ModelNotFoundError, TailorError
from app.core.library.registry import Library, ScanRoots
from app.core.model.gguf_header import GGUFHeader
from tests.core.library.layouts import NO_ROOTS, hf_snapshot, write_like


def test_removing_a_found_model_hides_it_from_later_scans(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    lms = tmp_path / "lmstudio"
    file = write_like(headers["smollm2"], lms / "org" / "repo" / "smol-Q4_1.gguf")
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
    file = write_like(headers["smollm2"], lms / "org" / "repo" / "smol-Q4_1.gguf")
    picked = write_like(headers["gemma3"], tmp_path / "picked.gguf")
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
        write_like(headers["smollm2"], src / "smol.gguf"),
        write_like(headers["gemma3"], src / "gem.gguf"),
    )
    hf = tmp_path / "hf"
    new = hf_snapshot(hf, "org/a", "c1", {"smol-Q4_1.gguf": smol, "sub/gem-Q4_K_M.gguf": gem})
    old = hf_snapshot(hf, "org/a", "c0", {"smol-Q4_1.gguf": smol}, main=False)
    other = hf_snapshot(hf, "org/b", "c9", {"smol-Q4_1.gguf": smol})
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
    a = write_like(headers["smollm2"], folder / "a" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    b = write_like(headers["smollm2"], folder / "b" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    write_like(headers["gemma3"], folder / "gemma-3-270m-it-Q4_K_M.gguf")
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
    file = write_like(headers["smollm2"], tmp_path / "dl" / "smol.gguf")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)
    model = lib.add([file], origin="tailorlm", owned=True)
    file.unlink()

    [listed] = lib.scan()
    assert listed == model and not listed.present and lib.find("smol") == model
    assert lib.remove("smol", delete_files=True) == model and lib.models() == []

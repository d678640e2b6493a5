"""Header facts: read once per file version; files that are not readable GGUFs are skipped and remembered."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import CorruptModelError, ModelNotFoundError, NotAGGUFError
from app.core.library import header_facts
from app.core.library.registry import Library
from app.core.model.gguf_header import GGUFHeader
from app.core.model.source import model_from_gguf
from tests.core.library.layouts import NO_ROOTS, write_like


def test_headers_are_read_once_and_again_when_a_file_changes(
    tmp_path: Path, headers: dict[str, GGUFHeader], monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []

    def counting(path: Path) -> Any:
        reads.append(path)
        return model_from_gguf(path)

    monkeypatch.setattr(header_facts, "model_from_gguf", counting)
    folder = tmp_path / "models"
    a = write_like(headers["smollm2"], folder / "a.gguf")
    write_like(headers["gemma3"], folder / "b.gguf")
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=NO_ROOTS)

    assert len(lib.add_folder(folder)) == 2 and len(reads) == 2
    lib.scan()
    Library(registry, roots=NO_ROOTS).scan()  # the cache is in the registry file, not in memory
    assert len(reads) == 2

    a.unlink()
    write_like(headers["gemma3"], a)
    lib.scan()
    assert reads[2:] == [a]
    assert lib.find("a").arch == "gemma3"


def test_bad_files_are_skipped_by_scans_and_refused_by_add(
    tmp_path: Path, headers: dict[str, GGUFHeader], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "models"
    good = write_like(headers["smollm2"], folder / "good.gguf")
    (folder / "notes.gguf").write_text("not a model")
    with good.open("rb") as f:
        (folder / "cut.gguf").write_bytes(f.read(4096))  # the header ends early
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)

    with caplog.at_level(logging.WARNING, logger="app.core.library.header_facts"):
        assert [m.path for m in lib.add_folder(folder)] == [good]
    assert "notes.gguf" in caplog.text and "cut.gguf" in caplog.text
    with pytest.raises(NotAGGUFError):
        lib.add([folder / "notes.gguf"], origin="file", owned=False)
    with pytest.raises(CorruptModelError, match="ends early"):
        lib.add([folder / "cut.gguf"], origin="file", owned=False)
    with pytest.raises(ModelNotFoundError):
        lib.add([folder / "gone.gguf"], origin="file", owned=False)
    assert [m.path for m in lib.models()] == [good]


def test_models_are_named_as_the_advisor_names_them_and_old_cached_names_are_read_again(
    tmp_path: Path, smollm2_path: Path
) -> None:
    """Not the GGUF's raw general.name ("Smollm2 135M 8k Lc100K Mix1 Ep2"): the catalog's name."""
    folder = tmp_path / "models"
    folder.mkdir()
    link = folder / smollm2_path.name
    link.symlink_to(smollm2_path)
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=NO_ROOTS)
    (found,) = lib.add_folder(folder)
    assert found.name == "SmolLM2 135M Instruct"
    # a cache written before names were chosen this way holds the raw name under an old-style key
    key, _ = header_facts.stat_key([link])
    old_key = key.removeprefix(header_facts.FACTS_VERSION)
    cache = {old_key: {**header_facts.describe([link]), "name": "Smollm2 135M 8k Lc100K Mix1 Ep2"}}
    assert header_facts.cached_facts(cache, {}, (link,), None)["name"] == "SmolLM2 135M Instruct"

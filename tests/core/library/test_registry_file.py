"""library.json: it survives restarts, a damaged one is set aside, concurrent writers lose nothing."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.core.library.registry import Library, LibraryModel
from app.core.model.gguf_header import GGUFHeader
from tests.core.library.layouts import NO_ROOTS, write_like


def test_the_registry_survives_a_restart(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    file = write_like(headers["smollm2"], tmp_path / "downloads" / "SmolLM2-135M-Instruct-Q4_1.gguf")
    folder = tmp_path / "models"
    write_like(headers["gemma3"], folder / "gemma.gguf")
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


@pytest.mark.parametrize(
    "damage",
    [
        '{"models": [{"id": ',
        '{"models": [{"id": "x"}]}',
        "\xff\xfe",
        '{"models": ' + "[" * 100_000 + "]" * 100_000 + "}",
    ],
)
def test_a_damaged_registry_is_set_aside_and_the_library_still_works(
    tmp_path: Path, headers: dict[str, GGUFHeader], caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    registry = tmp_path / "library.json"
    registry.write_text(damage, encoding="latin-1")
    lib = Library(registry, roots=NO_ROOTS)

    with caplog.at_level(logging.WARNING, logger="app.core.library.registry_file"):
        assert lib.models() == []
    [backup] = tmp_path.glob("library.json.corrupt-*")
    assert backup.read_text(encoding="latin-1") == damage and "library.json" in caplog.text

    model = lib.add([write_like(headers["smollm2"], tmp_path / "m.gguf")], origin="file", owned=False)
    assert json.loads(registry.read_text())["models"][0]["id"] == model.id
    assert Library(registry, roots=NO_ROOTS).models() == [model]


def test_concurrent_writers_lose_nothing(tmp_path: Path, headers: dict[str, GGUFHeader]) -> None:
    files = [write_like(headers["smollm2"], tmp_path / f"m{i}.gguf") for i in range(8)]
    registry = tmp_path / "library.json"

    def add(file: Path) -> LibraryModel:
        return Library(registry, roots=NO_ROOTS).add([file], origin="file", owned=False)

    with ThreadPoolExecutor(8) as pool:
        added = list(pool.map(add, files))
    assert sorted(m.id for m in Library(registry, roots=NO_ROOTS).models()) == sorted(m.id for m in added)
    assert len(added) == 8

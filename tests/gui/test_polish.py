"""Small things a user meets, on real files: the Library says which files it skipped and why when a
folder is added and when it rescans, instead of skipping them in silence."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.gui.panels.library import LibraryPanel


@pytest.fixture
def library(library_panel: LibraryPanel) -> LibraryPanel:
    return library_panel


def test_adding_a_folder_says_which_files_it_skipped_and_why(
    library: LibraryPanel, qtbot: QtBot, tmp_path: Path, smollm2_path: Path
) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    os.link(smollm2_path, folder / "smol.gguf")
    (folder / "empty.gguf").write_bytes(b"")  # a download that never started
    (folder / "notes.gguf").write_text("which model should I try next?\n")  # misnamed notes
    library.add_folder(folder)
    qtbot.waitUntil(lambda: not library.tasks, timeout=10_000)
    text = library.status.text()
    assert text.startswith(f"1 model found in {folder}.")
    assert "Skipped 2 files: empty.gguf is empty; notes.gguf is not a GGUF file" in text, text
    assert [m.path.name for m, _ in library.table_model.rows if m.path.parent == folder] == ["smol.gguf"]
    assert library.status.wordWrap()  # a long list wraps instead of widening the window

    library.rescan()  # and again on every rescan, with the count of what is listed
    qtbot.waitUntil(lambda: not library.tasks, timeout=10_000)
    text = library.status.text()
    assert "Skipped 2 files: empty.gguf is empty; notes.gguf is not a GGUF file" in text, text

    (folder / "empty.gguf").unlink()  # fixed: nothing is said about it any more
    (folder / "notes.gguf").unlink()
    library.rescan()
    qtbot.waitUntil(lambda: not library.tasks, timeout=10_000)
    assert "Skipped" not in library.status.text()

"""The one line a front end shows for the files a scan skipped, from real bad files: each named with
why in a short clause ("empty.gguf is empty"), the reason's hint left to the details, and a long
list cut to a count."""

from __future__ import annotations

import os
from pathlib import Path

from app.core.library.registry import Library
from app.core.library.scan import EMPTY, skipped_summary
from tests.core.library.layouts import NO_ROOTS


def _folder_of_bad_files(tmp_path: Path, smollm2_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    os.link(smollm2_path, folder / "good.gguf")
    (folder / "empty.gguf").write_bytes(b"")
    (folder / "notes.gguf").write_text("shopping list, not a model\n")
    with smollm2_path.open("rb") as f:  # a download cut off inside the tensor data
        (folder / "cut.gguf").write_bytes(f.read(smollm2_path.stat().st_size // 2))
    return folder


def test_each_skipped_file_is_named_with_its_reason(tmp_path: Path, smollm2_path: Path) -> None:
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)
    found = lib.add_folder(_folder_of_bad_files(tmp_path, smollm2_path))
    assert [m.path.name for m in found] == ["good.gguf"]
    reasons = {p.path.name: p.reason for p in lib.last_problems}
    assert reasons["empty.gguf"] == EMPTY  # said by the scan itself: a 0-byte file has no header

    text = skipped_summary(lib.last_problems)
    assert text.startswith("Skipped 3 files: ") and text.endswith(".")
    clauses = dict(c.split(" ", 1) for c in text.removeprefix("Skipped 3 files: ").rstrip(".").split("; "))
    assert clauses == {
        "cut.gguf": clauses["cut.gguf"],
        "empty.gguf": "is empty",
        "notes.gguf": "is not a GGUF file (it does not start with 'GGUF')",
    }
    assert clauses["cut.gguf"].startswith("is truncated")  # "The file is truncated: …" made a clause
    assert "Choose a .gguf" not in text  # the hint is for one file's details, not the summary
    assert str(tmp_path) not in text  # names, not paths


def test_a_long_list_names_three_and_counts_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(5):
        (folder / f"empty-{i}.gguf").write_bytes(b"")
    lib = Library(tmp_path / "library.json", roots=NO_ROOTS)
    assert lib.add_folder(folder) == []
    text = skipped_summary(lib.last_problems)
    assert text.startswith("Skipped 5 files: empty-0.gguf is empty; ") and text.endswith("; and 2 more.")
    assert text.count(" is empty") == 3
    assert skipped_summary(()) == ""

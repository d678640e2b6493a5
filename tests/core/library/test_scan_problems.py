"""Bad files in scanned folders: each is skipped and reported with its reason, never hides the
others, never hangs the scan (pipes) or crashes it (symlink loops)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from app.core.library.registry import Library, ScanProblem, ScanReport, ScanRoots
from app.core.model.gguf_header import GGUFHeader
from tests.core.library.layouts import NO_ROOTS, hf_snapshot, link_file, ollama_pull, write_like

T = TypeVar("T")


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """``fn()``, failing the test (not hanging it) when it takes longer: a scan that opens a pipe
    waits for a writer forever."""
    out: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # re-raised below, on the test's thread
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if errors:
        raise errors[0]
    return out[0]


def _reasons(problems: tuple[ScanProblem, ...]) -> dict[str, str]:
    return {p.path.name: p.reason for p in problems}


def test_a_truncated_gguf_in_the_hf_cache_is_reported_and_hides_nothing(
    tmp_path: Path, smollm2_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(200_000))  # the header ends inside the tokenizer
    hf = tmp_path / "hf"
    hf_snapshot(hf, "org/broken-GGUF", "c1", {"broken-Q4_1.gguf": cut})
    hf_snapshot(
        hf, "org/good-GGUF", "c2", {"good-Q4_1.gguf": write_like(headers["smollm2"], tmp_path / "g.gguf")}
    )
    lms = tmp_path / "lms"
    link_file(smollm2_path, lms / "pub" / "repo" / "smol-Q4_1.gguf")
    lib = Library(tmp_path / "library.json", roots=ScanRoots(hf, (lms,)))

    report = lib.scan_report()

    assert isinstance(report, ScanReport)
    assert sorted(m.path.name for m in report.models) == ["good-Q4_1.gguf", "smol-Q4_1.gguf"]
    assert [p.path.name for p in report.problems] == ["broken-Q4_1.gguf"]
    assert "ends early" in report.problems[0].reason
    assert lib.last_problems == report.problems
    # The damage is remembered by (path, size, mtime): the next scan reports it without parsing.
    assert [m.id for m in lib.scan()] == [m.id for m in report.models]
    assert lib.last_problems == report.problems


def test_pipes_named_gguf_are_reported_without_being_opened(
    tmp_path: Path, smollm2_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    folder = tmp_path / "mine"
    good = write_like(headers["smollm2"], folder / "good.gguf")
    os.mkfifo(folder / "pipe.gguf")
    lms = tmp_path / "lms"
    (lms / "pub" / "repo").mkdir(parents=True)
    os.mkfifo(lms / "pub" / "repo" / "pipe-lms.gguf")
    ollama = tmp_path / "ollama"
    (ollama / "blobs").mkdir(parents=True)
    os.mkfifo(ollama / "blobs" / f"sha256-{'c' * 64}")
    ollama_pull(
        ollama, ollama / "blobs" / f"sha256-{'c' * 64}", "registry.ollama.ai/library/p/latest", "c" * 64
    )
    lib = Library(tmp_path / "library.json", roots=ScanRoots(None, (lms,), (ollama,)))

    found = _within(10, lambda: lib.add_folder(folder))

    assert [m.path for m in found] == [good]
    reasons = _reasons(lib.last_problems)
    assert set(reasons) == {"pipe.gguf", "pipe-lms.gguf", f"sha256-{'c' * 64}"}
    assert all("not a regular file" in r for r in reasons.values())


def test_symlink_loops_are_reported_and_the_folder_is_still_added(
    tmp_path: Path, headers: dict[str, GGUFHeader]
) -> None:
    folder = tmp_path / "mine"
    good = write_like(headers["smollm2"], folder / "good.gguf")
    (folder / "a.gguf").symlink_to("b.gguf")
    (folder / "b.gguf").symlink_to("a.gguf")
    (folder / "self.gguf").symlink_to("self.gguf")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to("..", target_is_directory=True)  # a folder loop
    (folder / "gone.gguf").symlink_to("nowhere.gguf")  # dangling: not a model, not a problem
    (folder / "dir.gguf").mkdir()  # a folder with a model's name is walked, not read
    registry = tmp_path / "library.json"
    lib = Library(registry, roots=NO_ROOTS)

    assert [m.path for m in _within(10, lambda: lib.add_folder(folder))] == [good]

    reasons = _reasons(lib.last_problems)
    assert set(reasons) == {"a.gguf", "b.gguf", "self.gguf"}
    assert all("symbolic links" in r for r in reasons.values())
    assert Library(registry, roots=NO_ROOTS).folders() == [folder.resolve()]  # saved


def test_the_folder_is_saved_even_when_every_file_in_it_is_bad(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.gguf").write_text("not a model")
    (folder / "empty.gguf").write_bytes(b"")
    registry = tmp_path / "library.json"

    assert Library(registry, roots=NO_ROOTS).add_folder(folder) == []

    lib = Library(registry, roots=NO_ROOTS)
    assert lib.folders() == [folder.resolve()]
    assert lib.scan() == [] and set(_reasons(lib.last_problems)) == {"notes.gguf", "empty.gguf"}

"""The ELF reader (app/gui/elf_needed.py) against readelf on real libraries: Qt's, the system's,
and broken files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.gui.elf_needed import ElfReadError, read_dynamic

QT = Path(__import__("PySide6").__file__).parent / "Qt"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF: Linux")


def _readelf(path: Path) -> tuple[list[str], list[str]]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    runpath = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(RUNPATH)" in line]
    return needed, runpath


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils) as the reference")
def test_needed_names_and_runpath_match_readelf() -> None:
    files = [*sorted((QT / "plugins" / "platforms").glob("*.so")), *sorted((QT / "lib").glob("libQt6*.so.6"))[:8],
             Path(sys.executable).resolve()]  # fmt: skip
    for path in files:
        needed, search = read_dynamic(path)
        expected_needed, expected_runpath = _readelf(path)
        assert needed == expected_needed, path
        origin = str(path.parent)
        expected_search = [
            Path(d.replace("$ORIGIN", origin)) for rp in expected_runpath for d in rp.split(":") if d
        ]
        assert search == expected_search, path


def test_broken_files_are_one_error(tmp_path: Path) -> None:
    plugin = (QT / "plugins" / "platforms" / "libqxcb.so").read_bytes()
    cases = {"text": b"not an ELF file", "empty": b"", "header only": plugin[:64],
             "cut short": plugin[: len(plugin) // 2]}  # fmt: skip
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ElfReadError):
            read_dynamic(path)

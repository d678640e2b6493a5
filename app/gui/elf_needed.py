"""The libraries a Linux shared object asks for: its ELF ``DT_NEEDED`` names and the folders of its
``DT_RUNPATH`` (or ``DT_RPATH``), read from the file with no tools (readelf, ldd) needed.

Layouts from the System V ABI (gABI, "Object Files" and "Dynamic Linking"): the ELF header, the
section header table, the ``SHT_DYNAMIC`` section and the string table its ``sh_link`` names.
Bounded: at most ``_MAX_SECTIONS`` section headers and ``_MAX_TABLE_BYTES`` per table read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

_SHT_DYNAMIC = 6  # gABI section type of the dynamic linking table
_DT_NULL, _DT_NEEDED, _DT_RPATH, _DT_RUNPATH = 0, 1, 15, 29  # gABI dynamic tags
_MAX_SECTIONS = 4096  # real libraries have < 100 (libQt6Core: 33)
_MAX_TABLE_BYTES = 16 << 20  # libQt6Gui's .dynstr is ~0.6 MB


class ElfReadError(Exception):
    """The file is not an ELF shared object this reader understands (a private signal to the caller)."""


def read_dynamic(path: Path) -> tuple[list[str], list[Path]]:
    """``(needed, search)``: the library names ``path`` needs, in order, and the folders its RUNPATH
    (else RPATH) names, with ``$ORIGIN`` replaced by the file's folder. Raises ``ElfReadError``."""
    with path.open("rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4:5] not in (b"\1", b"\2") or ident[5:6] not in (b"\1", b"\2"):
            raise ElfReadError(f"{path} is not an ELF file")
        wide, order = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if len(ident) < (64 if wide else 52):
            raise ElfReadError(f"{path} ends inside its ELF header")
        header = struct.unpack_from(order + ("QQQIHHHHHH" if wide else "IIIIHHHHHH"), ident, 24)
        shoff, shentsize, shnum = header[2], header[7], header[8]
        if not 0 < shnum <= _MAX_SECTIONS or shentsize < (64 if wide else 40):
            raise ElfReadError(f"{path} has no readable section table")
        sections = [
            struct.unpack_from(order + ("IIQQQQIIQQ" if wide else "IIIIIIIIII"), table, 0)
            for table in (_read(f, shoff + i * shentsize, shentsize) for i in range(shnum))
        ]
        dynamic = next((s for s in sections if s[1] == _SHT_DYNAMIC), None)
        if dynamic is None:
            return [], []  # statically linked: needs nothing
        if dynamic[6] >= shnum:
            raise ElfReadError(f"{path}: the dynamic section names no string table")
        strings_section = sections[dynamic[6]]
        entries = _read(f, dynamic[4], dynamic[5])
        strings = _read(f, strings_section[4], strings_section[5])
    entry = struct.Struct(order + ("qQ" if wide else "iI"))
    needed: list[str] = []
    runpath: str | None = None
    rpath: str | None = None
    for tag, value in entry.iter_unpack(entries[: len(entries) - len(entries) % entry.size]):
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            needed.append(_string(strings, value))
        elif tag == _DT_RUNPATH:
            runpath = _string(strings, value)
        elif tag == _DT_RPATH:
            rpath = _string(strings, value)
    origin = str(path.parent)
    paths = runpath if runpath is not None else rpath or ""
    search = [
        Path(d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        for d in paths.split(":")
        if d and "$" not in d.replace("${ORIGIN}", "").replace("$ORIGIN", "")  # $LIB, $PLATFORM: skip
    ]
    return needed, search


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    if size > _MAX_TABLE_BYTES:
        raise ElfReadError(f"a table of {size} bytes is too large")
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ElfReadError("the file ends inside a table")
    return data


def _string(strings: bytes, offset: int) -> str:
    end = strings.find(b"\0", offset)
    if offset >= len(strings) or end < 0:
        raise ElfReadError("a name points outside the string table")
    return strings[offset:end].decode("utf-8", "surrogateescape")

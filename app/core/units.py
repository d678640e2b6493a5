"""Sizes in and out: ``"16GB"`` → bytes, bytes → ``"15.2 GiB"``. Formatting only happens at the edges."""

from __future__ import annotations

import re

from app.core.errors import InvalidSizeError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000, "KB": 1000, "KIB": KIB,
    "M": 1000**2, "MB": 1000**2, "MIB": MIB,
    "G": 1000**3, "GB": 1000**3, "GIB": GIB,
    "T": 1000**4, "TB": 1000**4, "TIB": 1 << 40,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """``"16GB"``, ``"16 GiB"``, ``"8g"``, ``"512MB"``, ``"1073741824"`` → bytes.

    Plain ``G``/``GB`` are decimal as on spec sheets, ``GiB`` binary; a bare number is bytes.
    """
    m = _SIZE_RE.match(text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise InvalidSizeError(f"{text!r} is not a size.", hint="Write it like 16GB, 8GiB or 512MB.")
    return int(float(m.group(1)) * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Binary units with three significant digits: ``1.50 GiB``, ``640 MiB``."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            value = n / size
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{sign}{value:.{digits}f} {unit}"
    return f"{sign}{int(n)} B"

"""How generated README numbers are written: one place, so every table rounds alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MIB = 1 << 20
GIB = 1 << 30


def pct(x: float, digits: int = 1, *, sign: bool = True) -> str:
    """A fraction as a percentage: 0.0123 → "+1.2 %"."""
    return f"{100 * x:{'+' if sign else ''}.{digits}f} %"


def mib(n: float) -> str:
    return f"{n / MIB:,.0f} MiB"


def spread(values: Sequence[float], digits: int = 2) -> str:
    """min–max of the values (the rounds of one measurement)."""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return f"{lo}–{hi}" if lo != hi else f"{lo} in every round"


def verdict(values: Sequence[float]) -> str:
    """Issue 15: a ratio whose rounds span 1.0 is "on par", whatever its median says."""
    if min(values) <= 1.0 <= max(values):
        return "on par"
    return "faster" if min(values) > 1.0 else "slower"


def machine_words(m: dict[str, Any] | None) -> str:
    """ "AMD EPYC (2 cores, AVX2, no AVX-512)" from a benchmark's ``machine`` record; "—" without one."""
    if not m:
        return "—"
    isa = {f.lower().replace("_", "") for f in m.get("isa") or m.get("cpu_isa") or ()}
    parts = [f"{m['physical_cores']} cores"] if m.get("physical_cores") else []
    if "avx2" in isa:
        parts.append("AVX2")
    parts.append("AVX-512" if "avx512f" in isa else "no AVX-512")
    return f"{m['cpu_model']} ({', '.join(parts)})" if m.get("cpu_model") else f"x86-64 ({', '.join(parts)})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

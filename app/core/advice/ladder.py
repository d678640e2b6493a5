"""A measured quality ladder: one model quantized to several types, with and without an importance
matrix, each scored against the source (mean KL divergence of the next-token distributions), and
the trade-off between file size and loss read off as a Pareto front.

Plain data and arithmetic; the work (quantize, score) is :mod:`app.engine.ladder`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

# Smallest to largest; what one click measures unless the user picks. The IQ types and Q2_K_S
# need an importance matrix; the rest are measured plain, and with one when there is one.
DEFAULT_LADDER = (
    "IQ2_XS",
    "IQ3_XXS",
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "IQ4_XS",
    "Q4_K_M",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
)


@dataclass(frozen=True)
class Rung:
    """One quantization of the ladder, measured."""

    quant: str
    imatrix: bool
    size_bytes: int
    bits_per_weight: float  # of the whole file, over the model's parameters
    kld_mean: float
    kld_p99: float
    top1_agreement: float
    ppl_change: float
    quantize_s: float
    score_s: float
    pareto: bool = False  # no other rung is both smaller (or as small) and closer to the source

    @property
    def name(self) -> str:
        return f"{self.quant} + imatrix" if self.imatrix else self.quant

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (size, loss) points: which are on the front — no other point is at most as large and at
    most as lossy while strictly better in one of the two."""
    return [
        not any(s2 <= s and k2 <= k and (s2 < s or k2 < k) for j, (s2, k2) in enumerate(points) if j != i)
        for i, (s, k) in enumerate(points)
    ]


def mark_front(rungs: Sequence[Rung]) -> list[Rung]:
    """The rungs sorted by size, each marked on or off the Pareto front."""
    ordered = sorted(rungs, key=lambda r: (r.size_bytes, r.kld_mean))
    front = pareto_front([(r.size_bytes, r.kld_mean) for r in ordered])
    return [replace(r, pareto=on) for r, on in zip(ordered, front, strict=True)]


def imatrix_gains(rungs: Sequence[Rung]) -> dict[str, float]:
    """Per type measured both ways: the share of the plain type's mean KLD the matrix removes
    (0.4 = 40 % less divergence)."""
    plain = {r.quant: r.kld_mean for r in rungs if not r.imatrix}
    return {
        r.quant: 1.0 - r.kld_mean / plain[r.quant]
        for r in rungs
        if r.imatrix and plain.get(r.quant, 0.0) > 0.0
    }

"""What to say about a model file the user already has when the advisor would pick another
quantization: the button runs the file, the ★ marks the pick, and this sentence says why they differ.

It compares the two plans by the same rules the pick used (:mod:`app.core.advice.policy`) and
formats their speeds as the table does, so it can never contradict the reasons or the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.advice.policy import SAME_QUALITY_KLD
from app.core.advice.reasons import PLACEMENT_PHRASE, tok_s_words
from app.core.advice.speed_words import format_tok_s
from app.core.units import format_bytes

if TYPE_CHECKING:
    from app.core.advice.recommend import Plan


@dataclass(frozen=True)
class FileVerdict:
    runs: bool  # the file itself fits with these settings
    better_quant: str | None  # the recommended quantization, when it differs from the file's
    sentence: str  # why they differ, in words; "" when the file is the recommendation


def verdict_for_file(own: Plan | None, rec: Plan | None) -> FileVerdict:
    """``own``: the plan of the file's own quantization; ``rec``: the advisor's pick (same context)."""
    if own is None:
        return FileVerdict(
            False, rec.quant if rec else None, "The advisor cannot size this file's quantization."
        )
    runs = own.fits != "no"
    if rec is None:
        return FileVerdict(
            runs, None, "" if runs else "No quantization of this model fits with these settings."
        )
    if rec.quant == own.quant:
        return FileVerdict(runs, None, "")
    theirs = f"{rec.quant} ({rec.quality.label} quality, ~{tok_s_words(rec.speed.tok_s)})"
    if not runs:
        return FileVerdict(False, rec.quant, f"Your {own.quant} file does not fit with these settings; {theirs} "
                           f"would, {PLACEMENT_PHRASE[rec.fits]}.")  # fmt: skip
    yours = f"your {own.quant} file works, at {own.quality.label} quality (~{tok_s_words(own.speed.tok_s)})"
    if rec.quality.kld < own.quality.kld - SAME_QUALITY_KLD:
        return FileVerdict(True, rec.quant, f"{theirs} would fit and be better; {yours}.")
    if rec.quality.kld > own.quality.kld + SAME_QUALITY_KLD:
        return FileVerdict(True, rec.quant, f"Your {own.quant} file keeps more quality but writes only "
                           f"~{tok_s_words(own.speed.tok_s)} here; {rec.quant} would write "
                           f"~{format_tok_s(rec.speed.tok_s)} at {rec.quality.label} quality.")  # fmt: skip
    if rec.file_bytes < own.file_bytes:
        return FileVerdict(True, rec.quant, f"{rec.quant} is as good in a smaller file "
                           f"({format_bytes(rec.file_bytes)} instead of {format_bytes(own.file_bytes)}); {yours}.")  # fmt: skip
    return FileVerdict(True, rec.quant, f"{theirs} is as good; {yours}.")

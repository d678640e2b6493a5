"""What a quantization level costs in output quality, from llama.cpp's published measurements.

Source: llama.cpp ``tools/perplexity/README.md`` (PR #6936): Llama-3-8B on wikitext-2, F16
perplexity 6.2332; ΔPPL, mean KL divergence of the token distribution from F16's, and how often
the most likely token agrees with F16's. Types it does not list are interpolated by bits per
weight between their neighbours and marked ``interpolated``. Small models lose more at the same
level (Llama-2-7B is more tolerant than Llama-3-8B; models under ~3B less so), which the advisor
says in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# type: (ΔPPL, mean KLD, top-token agreement or None), Llama-3-8B, tools/perplexity/README.md
_PUBLISHED: dict[str, tuple[float, float, float | None]] = {
    "F16": (0.0, 0.0, 1.0),
    "BF16": (0.0, 0.0, 1.0),
    "Q8_0": (0.0027, 0.00136, 0.977),
    "Q6_K": (0.0217, 0.00545, 0.960),
    "Q5_K_M": (0.057, 0.0108, None),
    "Q5_K_S": (0.1050, 0.0166, None),
    "Q5_1": (0.1062, 0.0180, None),
    "Q5_0": (0.1316, 0.0222, None),
    "Q4_K_M": (0.175, 0.0313, 0.919),
    "Q4_K_S": (0.2689, 0.0431, None),
    "Q4_1": (0.4511, 0.0717, None),
    "Q4_0": (0.469, 0.0719, None),
    "Q3_K_L": (0.5562, 0.0872, None),
    "Q3_K_M": (0.657, 0.1019, None),
    "Q3_K_S": (1.63, 0.228, None),
    "Q2_K": (3.52, 0.445, 0.711),
    # Made with an importance matrix (the table's "WT 10m" rows: 10M tokens of wikitext); llama.cpp
    # publishes these types only that way, and most of them cannot be made without one.
    "IQ4_NL": (0.2240, 0.0357, None),
    "IQ4_XS": (0.2281, 0.0363, None),
    "IQ3_M": (0.6667, 0.1025, None),
    "IQ3_S": (0.7339, 0.1113, None),
    "IQ3_XS": (0.9314, 0.1387, None),
    "IQ3_XXS": (1.2268, 0.1836, None),
    "IQ2_M": (2.3692, 0.3260, None),
    "Q2_K_S": (3.0921, 0.4034, None),
    "IQ2_S": (3.4191, 0.4392, None),
    "IQ2_XS": (4.5298, 0.5463, None),
    "IQ2_XXS": (7.8601, 0.8120, None),
    "IQ1_M": (19.262, 1.3931, None),
    "IQ1_S": (54.463, 2.2546, None),
}
WITH_IMATRIX = frozenset({"IQ4_NL", "IQ4_XS", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "Q2_K_S", "IQ2_S",
                          "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S"})  # fmt: skip
# Whole-file bits per weight of Llama-3.1-8B files (tools/quantize/README.md), used to place the
# unlisted types between their published neighbours.
_BPW = {
    "Q2_K": 3.16, "Q3_K_S": 3.64, "Q3_K_M": 3.95, "Q3_K_L": 4.30, "IQ4_XS": 4.46, "Q4_0": 4.55,
    "IQ4_NL": 4.68, "Q4_K_S": 4.67, "Q4_K_M": 4.89, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_K_S": 5.57,
    "Q5_1": 6.0, "Q5_K_M": 5.70, "Q6_K": 6.56, "Q8_0": 8.50, "F16": 16.0, "BF16": 16.0,
    "F32": 32.0,
}  # fmt: skip
F16_PPL = 6.2332


@dataclass(frozen=True)
class Quality:
    quant: str
    kld: float  # mean KL divergence from F16 (nats per token)
    ppl_delta: float  # perplexity increase over F16 (6.2332)
    top_token_agreement: float | None
    interpolated: bool
    label: str  # "lossless", "excellent", "very good", "good", "fair", "poor"
    measured_against: str | None = None  # measured on this model against this type of it
    ppl_change: float | None = None  # measured: relative perplexity change (0.05 = +5 %)

    @property
    def ppl_delta_pct(self) -> float:
        if self.ppl_change is not None:
            return 100 * self.ppl_change
        return 100 * self.ppl_delta / F16_PPL

    def to_dict(self) -> dict[str, object]:
        return {
            "quant": self.quant,
            "kld": self.kld,
            "ppl_delta": self.ppl_delta,
            "ppl_delta_pct": round(self.ppl_delta_pct, 2),
            "top_token_agreement": self.top_token_agreement,
            "interpolated": self.interpolated,
            "label": self.label,
            "measured_against": self.measured_against,
            "source": (f"measured here on this model against its {self.measured_against}"
                       if self.measured_against else "llama.cpp tools/perplexity/README.md, Llama-3-8B, wikitext-2"
                       + (", with an importance matrix" if self.quant in WITH_IMATRIX else "")),
        }  # fmt: skip


def quality_for(quant: str, measured: dict[str, dict[str, Any]] | None = None) -> Quality:
    """This model's own measurement of ``quant`` (``tailorlm quality`` / ``tailorlm ladder``, see
    :func:`app.core.advice.measured_quality.measured`) when there is one, else the published one."""
    entry = (measured or {}).get(quant)
    if not entry:
        return quality_of(quant)
    kld, top1 = float(entry["kld_mean"]), float(entry["top1_agreement"])
    ref, cand = entry.get("ppl_ref"), entry.get("ppl_cand")
    change = (
        cand / ref - 1.0
        if isinstance(ref, int | float) and isinstance(cand, int | float) and ref > 0
        else None
    )
    return Quality(
        quant, kld, (change or 0.0) * F16_PPL, top1, False, _label(kld), str(entry["reference"]), change
    )


def _label(kld: float) -> str:
    # Bands chosen so the published levels land where llama.cpp's docs describe them:
    # Q8_0 "extremely low quality loss", Q6_K/Q5_K_M "very low", Q4_K_M "balanced", Q3 "high", Q2 "extreme".
    if kld < 0.002:
        return "lossless"
    if kld < 0.008:
        return "excellent"
    if kld < 0.02:
        return "very good"
    if kld < 0.05:
        return "good"
    if kld < 0.15:
        return "fair"
    return "poor"


def quality_of(quant: str) -> Quality:
    if quant == "MXFP4_MOE":
        # Offered only for models released with MXFP4 experts (gpt-oss, trained for it): the experts
        # stay as released, everything else is Q8_0 — Q8_0's loss, measured against the release.
        q8 = quality_of("Q8_0")
        return Quality("MXFP4_MOE", q8.kld, q8.ppl_delta, q8.top_token_agreement, True, q8.label)
    if quant == "F32":  # the reference itself, at more than F16's precision
        quant_f16 = quality_of("F16")
        return Quality(
            "F32", quant_f16.kld, quant_f16.ppl_delta, quant_f16.top_token_agreement, False, quant_f16.label
        )
    if quant in _PUBLISHED:
        d, k, a = _PUBLISHED[quant]
        return Quality(quant, k, d, a, False, _label(k))
    bpw = _BPW.get(quant)
    if bpw is None:
        raise ValueError(f"no quality data for {quant}")
    known = sorted((_BPW[q], q) for q in _PUBLISHED if q in _BPW and q not in WITH_IMATRIX)
    lo = max((b, q) for b, q in known if b <= bpw)
    hi = min((b, q) for b, q in known if b >= bpw)
    if lo[1] == hi[1]:
        d, k, _ = _PUBLISHED[lo[1]]
        return Quality(quant, k, d, None, True, _label(k))
    w = (bpw - lo[0]) / (hi[0] - lo[0])
    (dl, kl, _), (dh, kh, _) = _PUBLISHED[lo[1]], _PUBLISHED[hi[1]]
    k = kl + w * (kh - kl)
    return Quality(quant, k, dl + w * (dh - dl), None, True, _label(k))

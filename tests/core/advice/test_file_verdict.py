"""What the advisor says about a file the user has when it would pick another quantization: the
real SmolLM2 Q4_1 file, whose ★ is Q8_0 on a roomy machine."""

from __future__ import annotations

from pathlib import Path

from app.core.advice.file_verdict import verdict_for_file
from app.core.advice.recommend import Budget, advise, best_plan
from app.core.advice.speed_words import format_tok_s
from app.core.model.source import load_model
from app.core.units import GIB, MIB


def test_a_file_below_the_pick_says_the_pick_would_be_better(smollm2_path: Path) -> None:
    advice = advise(load_model(str(smollm2_path)), Budget(16 * GIB, 20e9), n_ctx=4096, contexts=(4096,))
    rec = advice.recommended
    own = next(p for p in advice.plans if p.quant == "Q4_1")
    assert rec is not None and rec.quant == "Q8_0"
    v = verdict_for_file(own, rec)
    assert v.runs and v.better_quant == "Q8_0"
    assert v.sentence.startswith("Q8_0 (lossless quality, ~") and "would fit and be better" in v.sentence
    # the speeds are the table's
    assert f"~{format_tok_s(rec.speed.tok_s)} tokens/s" in v.sentence
    assert f"~{format_tok_s(own.speed.tok_s)} tokens/s" in v.sentence
    same = verdict_for_file(rec, rec)
    assert same.runs and same.better_quant is None and same.sentence == ""


def test_a_file_that_does_not_fit_says_which_one_would(smollm2_path: Path) -> None:
    model = load_model(str(smollm2_path))
    small = best_plan(model, "Q2_K", 4096, Budget(16 * GIB, 20e9))
    budget = Budget(small.ram_bytes + 2 * MIB, 20e9)  # Q2_K (its 4_0 fallback) fits, Q8_0 does not
    own = best_plan(model, "Q8_0", 4096, budget)
    rec = best_plan(model, "Q2_K", 4096, budget)
    assert own.fits == "no" and rec.fits != "no"
    v = verdict_for_file(own, rec)
    assert not v.runs and v.better_quant == "Q2_K"
    assert v.sentence.startswith("Your Q8_0 file does not fit with these settings; Q2_K")


def test_a_better_but_slow_file_says_what_speed_it_costs() -> None:
    model = load_model("llama-3.1-8b-instruct")
    advice = advise(model, Budget(12 * GIB, 30e9), n_ctx=4096, contexts=(4096,))
    rec = advice.recommended
    own = next(p for p in advice.plans if p.quant == "Q8_0")  # as if the user had downloaded Q8_0
    assert rec is not None and rec.quant != "Q8_0" and own.speed.tok_s < rec.speed.tok_s
    v = verdict_for_file(own, rec)
    assert v.runs and v.better_quant == rec.quant
    assert v.sentence == (f"Your Q8_0 file keeps more quality but writes only ~{format_tok_s(own.speed.tok_s)} "
                          f"tokens/s here; {rec.quant} would write ~{format_tok_s(rec.speed.tok_s)} at "
                          f"{rec.quality.label} quality.")  # fmt: skip

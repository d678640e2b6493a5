"""The size/quality front of a measured ladder, and the advisor planning with a model's own
measurements instead of the published Llama-3-8B ones."""

from __future__ import annotations

from pathlib import Path

from app.core.advice.ladder import Rung, imatrix_gains, mark_front, pareto_front
from app.core.advice.quality import quality_for, quality_of
from app.core.advice.recommend import Budget, advise
from app.core.model.source import model_from_gguf
from app.core.units import GIB


def _rung(quant: str, size: int, kld: float, imatrix: bool = False) -> Rung:
    return Rung(quant, imatrix, size, 8.0 * size / 1e6, kld, 2 * kld, 1 - kld, kld / 2, 1.0, 1.0)


def test_front_keeps_only_what_nothing_beats() -> None:
    # (size, loss): b is beaten by a (smaller and better); c ties a on size but loses more; d is
    # larger but better; e equals d and stays (nothing is strictly better).
    points = [(10, 0.5), (12, 0.6), (10, 0.7), (20, 0.1), (20, 0.1)]
    assert pareto_front(points) == [True, False, False, True, True]
    assert pareto_front([]) == []


def test_rungs_sort_by_size_and_the_matrix_gain_is_a_share() -> None:
    rungs = mark_front([_rung("Q4_K_M", 80, 0.05), _rung("Q2_K", 50, 0.40), _rung("Q2_K", 50, 0.25, True),
                        _rung("IQ3_XXS", 60, 0.30, True), _rung("Q3_K_S", 62, 0.33)])  # fmt: skip
    assert [r.name for r in rungs] == ["Q2_K + imatrix", "Q2_K", "IQ3_XXS + imatrix", "Q3_K_S", "Q4_K_M"]
    assert [r.pareto for r in rungs] == [True, False, False, False, True]
    assert imatrix_gains(rungs) == {"Q2_K": 1 - 0.25 / 0.40}


def test_the_advisor_plans_with_this_models_measurements(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    budget = Budget(ram_bytes=8 * GIB, ram_bandwidth_bytes_s=20e9, can_offload=False, cpu_threads=2)
    # As if `tailorlm ladder` had found Q4_K_M much worse on this small model than on Llama-3-8B.
    measured = {"Q4_K_M": {"kld_mean": 0.3, "top1_agreement": 0.7, "reference": "Q4_1", "ppl_ref": 10.0,
                           "ppl_cand": 12.0}}  # fmt: skip
    q = quality_for("Q4_K_M", measured)
    assert (q.kld, q.measured_against, q.label) == (0.3, "Q4_1", "poor")
    assert abs(q.ppl_delta_pct - 20.0) < 1e-9
    assert quality_for("Q5_K_M", measured) == quality_of("Q5_K_M")
    plain = advise(model, budget, n_ctx=2048)
    assert plain.recommended is not None
    pick = plain.recommended.quant
    # Now say this model's own measurement found the pick far worse than the smallest type.
    worst = {pick: {**measured["Q4_K_M"], "kld_mean": 10 * max(p.quality.kld for p in plain.plans)}}
    mine = advise(model, budget, n_ctx=2048, measured=worst)
    by_quant = {p.quant: p for p in mine.plans}
    assert by_quant[pick].quality.measured_against == "Q4_1" and by_quant[pick].dominated_by is not None
    assert mine.recommended is not None and mine.recommended.quant != pick
    same = {pick: {**measured["Q4_K_M"], "kld_mean": plain.recommended.quality.kld}}
    again = advise(model, budget, n_ctx=2048, measured=same)
    assert again.recommended is not None and again.recommended.quant == pick
    assert any("measured here on this model against its Q4_1" in r for r in again.reasons)
    assert not any("Small models lose more" in w for w in again.warnings)  # it is this model's own number

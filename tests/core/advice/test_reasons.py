"""The advisor's words against its own numbers, over many machines: one rule for the text and the
table — every speed in a sentence is the table's figure for that quantization, and a quantization
is never turned down for being slow while a slower or equally slow one is recommended."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.advice.policy import comfortable
from app.core.advice.reasons import a_number, context_warnings
from app.core.advice.recommend import Advice, Budget, GpuBudget, advise
from app.core.advice.speed_words import format_tok_s, shown_tok_s
from app.core.model.source import load_model
from app.core.units import GIB

# "Q5_K_S would also fit … ~0.9 tokens/s": a quantization named with a speed in one sentence
_NAMED_SPEED = re.compile(
    r"\b(?P<quant>(?:Q\d\w*|F16|BF16|IQ\w+)) would also fit.*?~(?P<tok_s>[\d.,<]+) tokens/s"
)
_REC_SPEED = re.compile(r"(?:Speed: about |Expect slow answers \(~)(?P<tok_s>[\d.,<]+) tokens/s")


def _check_one_rule(advice: Advice, min_tok_s: float) -> None:
    """The consistency the issue asked for, on one piece of advice."""
    rec = advice.recommended
    assert rec is not None
    table = {p.quant: format_tok_s(p.speed.tok_s) for p in advice.plans if p.n_ctx == advice.target_ctx}
    text = " ".join((*advice.reasons, *advice.warnings))
    assert "about 0 tokens/s" not in text and "~0 tokens/s" not in text
    for m in _REC_SPEED.finditer(text):  # the recommendation's speed, as the table shows it
        assert m["tok_s"] == table[rec.quant], (m[0], table[rec.quant])
    for m in _NAMED_SPEED.finditer(text):
        q = m["quant"]
        assert m["tok_s"] == table[q], (m[0], table[q])
        other = next(p for p in advice.plans if p.quant == q and p.n_ctx == advice.target_ctx)
        # never called slow while the pick is no faster
        assert other.speed.tok_s < rec.speed.tok_s, (m[0], rec.quant, rec.speed.tok_s)
        if "below a comfortable" in m[0]:
            assert comfortable(rec.speed.tok_s, min_tok_s) and not comfortable(other.speed.tok_s, min_tok_s)
    if comfortable(rec.speed.tok_s, min_tok_s):
        assert not any("Nothing reaches" in r for r in advice.reasons)
    else:
        assert advice.reasons[0].startswith(f"Nothing reaches a comfortable {min_tok_s:g} tokens/s")
        assert "below a comfortable" not in text
        assert any("Expect slow answers" in w for w in advice.warnings)


def _budgets() -> list[Budget]:
    out = []
    for bw in (2e9, 4e9, 6e9, 9e9, 14e9, 20e9, 40e9, 80e9):  # a slow laptop … a fast desktop
        out.append(Budget(ram_bytes=12 * GIB, ram_bandwidth_bytes_s=bw))
        out.append(
            Budget(ram_bytes=12 * GIB, ram_bandwidth_bytes_s=bw, gpus=(GpuBudget("g", 4 * GIB, 250e9),))
        )
    return out


@pytest.mark.parametrize("min_tok_s", [5.0, 12.0])
def test_the_words_follow_the_table_on_many_machines(min_tok_s: float) -> None:
    model = load_model("llama-3.1-8b-instruct")
    slow_seen = comfortable_seen = 0
    for budget in _budgets():
        advice = advise(model, budget, n_ctx=4096, contexts=(4096,), min_tok_s=min_tok_s)
        _check_one_rule(advice, min_tok_s)
        ok = comfortable(advice.recommended.speed.tok_s, min_tok_s)  # type: ignore[union-attr]
        slow_seen += not ok
        comfortable_seen += ok
    assert slow_seen and comfortable_seen  # the range covers both sides of the threshold


def test_small_models_and_long_contexts_follow_the_same_rule(smollm2_path: Path, gemma3_path: Path) -> None:
    for spec in (str(smollm2_path), str(gemma3_path), "qwen2.5-1.5b-instruct"):
        model = load_model(spec)
        for bw in (0.3e9, 1e9, 3e9, 20e9):
            for n_ctx in (
                4096,
                model.n_ctx_train,
            ):  # the longest context: the table once said 0.4, the text 0
                advice = advise(model, Budget(ram_bytes=16 * GIB, ram_bandwidth_bytes_s=bw), n_ctx=n_ctx,
                                contexts=(n_ctx,))  # fmt: skip
                _check_one_rule(advice, 5.0)


def test_a_slow_machine_says_nothing_is_comfortable_instead_of_rejecting_a_level_for_it() -> None:
    advice = advise(load_model("llama-3.1-8b-instruct"), Budget(12 * GIB, 6e9), n_ctx=4096, contexts=(4096,))
    rec = advice.recommended
    # Q4_K_S: llama.cpp's published loss (KLD 0.043 on Llama-3-8B) is within "good", and it is faster.
    assert rec is not None and rec.quant == "Q4_K_S"
    assert advice.reasons[0].startswith("Nothing reaches a comfortable 5 tokens/s on this machine")
    assert "Q4_K_S is the fastest that keeps good quality or better" in advice.reasons[0]
    good = [p for p in advice.plans if p.fits != "no" and p.quality.kld <= 0.05]
    assert rec.speed.tok_s == max(p.speed.tok_s for p in good)  # the words say how it was picked
    assert f"Speed: about {format_tok_s(rec.speed.tok_s)} tokens/s" in " ".join(advice.reasons)
    assert not any("below a comfortable" in r for r in advice.reasons)


def test_speeds_are_rounded_once_for_words_tables_and_thresholds() -> None:
    assert [format_tok_s(x) for x in (0.0, 0.04, 0.44, 0.96, 4.96, 9.96, 12.4, 1234.0)] == [
        "<0.1", "<0.1", "0.4", "1.0", "5.0", "10", "12", "1,234"
    ]  # fmt: skip
    assert shown_tok_s(4.96) == 5.0 and comfortable(4.96, 5.0)  # shown as 5.0: not "below 5"
    assert not comfortable(4.94, 5.0)


def test_a_context_beyond_the_trained_length_is_planned_with_a_warning(smollm2_path: Path) -> None:
    model = load_model(str(smollm2_path))  # trained on 8,192-token contexts
    beyond = advise(model, Budget(16 * GIB, 20e9), n_ctx=16384)
    assert any(
        "longer than the 8,192 tokens SmolLM2 135M Instruct was trained on" in w for w in beyond.warnings
    )
    within = advise(model, Budget(16 * GIB, 20e9), n_ctx=8192)
    assert not any("trained on" in w for w in within.warnings)
    assert context_warnings(model, 8192) == []
    from dataclasses import replace

    unknown = replace(model, n_ctx_train=0)  # a GGUF without a context length
    assert "does not say how long a context" in context_warnings(unknown, 4096)[0]


def test_numbers_get_the_article_they_are_spoken_with() -> None:
    assert [a_number(n) for n in (4096, 8192, 11000, 18432, 1024, 80000, 131072)] == [
        "a 4,096", "an 8,192", "an 11,000", "an 18,432", "a 1,024", "an 80,000", "a 131,072"
    ]  # fmt: skip

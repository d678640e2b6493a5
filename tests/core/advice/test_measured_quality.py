"""What `tailorlm quality` measured is kept per model; a file damaged or edited by hand is ignored
entry by entry, never crashed on (issue 13: a mistyped quality-measurements.json crashed advise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core import paths
from app.core.advice.measured_quality import measured, model_key, record
from app.core.model.source import model_from_gguf

RESULT = {"kld_mean": 0.005, "kld_p99": 0.02, "top1_agreement": 0.96, "ppl_ref": 18.3, "ppl_cand": 18.4,
          "n_tokens": 1785}  # fmt: skip


def test_a_measurement_is_kept_and_shown(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    record(model, "Q4_1", "Q8_0", RESULT)
    got = measured(model)
    assert set(got) == {"Q8_0"} and got["Q8_0"]["reference"] == "Q4_1" and got["Q8_0"]["kld_mean"] == 0.005


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2, 3]",
        "[" * 100_000 + "]" * 100_000,  # nested past Python's recursion limit
        json.dumps({"KEY": "a string, not an object"}),
        json.dumps({"KEY": {"Q8_0": {"kld_mean": "0.1", "top1_agreement": 0.9, "reference": "F16"}}}),
        json.dumps({"KEY": {"Q8_0": {"kld_mean": True, "top1_agreement": 0.9, "reference": "F16"}}}),
        json.dumps({"KEY": {"Q8_0": [0.1, 0.9]}}),
    ],
)
def test_a_damaged_file_is_ignored_and_overwritten_by_the_next_measurement(
    smollm2_path: Path, text: str
) -> None:
    model = model_from_gguf(smollm2_path)
    target = paths.data_dir() / "quality-measurements.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace("KEY", model_key(model)))
    assert measured(model) == {}
    record(model, "Q4_1", "Q5_K_M", RESULT)  # still works, and repairs what it owns
    assert set(measured(model)) == {"Q5_K_M"}


def test_good_entries_survive_a_bad_neighbour(smollm2_path: Path) -> None:
    model = model_from_gguf(smollm2_path)
    target = paths.data_dir() / "quality-measurements.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    good = {"kld_mean": 0.03, "top1_agreement": 0.9, "reference": "Q8_0"}
    target.write_text(json.dumps({model_key(model): {"Q4_K_M": good, "Q2_K": {"kld_mean": None}}}))
    assert measured(model) == {"Q4_K_M": good}

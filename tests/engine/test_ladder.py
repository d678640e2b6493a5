"""The measured quality ladder on a real model: every rung quantized and scored, the front marked,
the numbers kept, and the advisor planning with them from then on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.advice.measured_quality import measured
from app.core.model.source import model_from_gguf
from app.engine.imatrix import compute_imatrix
from app.engine.ladder import plan_rungs, quality_ladder
from app.engine.quality_eval import default_text
from tests.test_cli import tailorlm

pytest.importorskip("llama_cpp")


def test_plan_measures_plain_where_allowed_and_with_the_matrix_when_given(tmp_path: Path) -> None:
    assert plan_rungs(["Q2_K", "IQ2_XS"], None) == ([("Q2_K", False)], ["IQ2_XS"])
    assert plan_rungs(["Q2_K", "IQ2_XS"], tmp_path) == (
        [("Q2_K", False), ("Q2_K", True), ("IQ2_XS", True)],
        [],
    )


def test_ladder_on_smollm2(smollm2_path: Path, tmp_path: Path) -> None:
    matrix = compute_imatrix(
        smollm2_path, tmp_path / "m.imatrix.gguf", n_ctx=128, n_chunks=2, n_threads=2
    ).path
    stages: list[str] = []
    text = default_text()[:4000]  # ~1,000 tokens: 7 chunks of 128 per model and rung
    result = quality_ladder(smollm2_path, types=["Q2_K", "Q4_K_M"], imatrix=matrix, text=text, n_ctx=128, n_threads=2,
                            keep_dir=tmp_path / "kept", on_progress=lambda p: stages.append(f"{p.step}{p.stage}"))  # fmt: skip
    assert [r.name for r in sorted(result.rungs, key=lambda r: r.name)] == [
        "Q2_K", "Q2_K + imatrix", "Q4_K_M", "Q4_K_M + imatrix"]  # fmt: skip
    assert stages[0] == "1quantize" and "4score" in stages
    sizes = [r.size_bytes for r in result.rungs]
    assert sizes == sorted(sizes) and sorted(sizes) == sorted(Path(p).stat().st_size for p in result.kept)
    by = {r.name: r for r in result.rungs}
    assert by["Q2_K"].kld_mean > by["Q4_K_M"].kld_mean > 0  # two bits lose more than four, on any CPU
    assert any(r.pareto for r in result.rungs) and by["Q4_K_M"].size_bytes > by["Q2_K"].size_bytes
    # The smallest rung is always on the front, and nothing on it is beaten by another rung.
    assert result.rungs[0].pareto
    for r in result.rungs:
        if r.pareto:
            assert not any(o.size_bytes <= r.size_bytes and o.kld_mean < r.kld_mean for o in result.rungs)
    kept = measured(model_from_gguf(smollm2_path))
    assert {"Q2_K", "Q2_K + imatrix", "Q4_K_M", "Q4_K_M + imatrix"} <= set(kept)
    assert kept["Q4_K_M"]["reference"] == "Q4_1"
    advice = json.loads(tailorlm("advise", str(smollm2_path), "--json", "--ctx", "2048").stdout)
    q4 = next(p for p in advice["plans"] if p["quant"] == "Q4_K_M")
    assert q4["quality"]["measured_against"] == "Q4_1"
    assert q4["quality"]["kld"] == pytest.approx(by["Q4_K_M"].kld_mean)

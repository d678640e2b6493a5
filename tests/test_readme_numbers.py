"""The README's benchmark numbers are the committed results' (issue 15): every generated block of
README.md is what ``tests.bench.readme`` writes from ``tests/*/results/*.json`` today, and the
speed-model check's results are what today's planner predicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.bench import speed_model_check
from tests.bench.readme import README, ReadmeBlockError, Results, check, generate, write
from tests.bench.readme.markers import find_blocks

FIX = "run `python -m tests.bench.readme --write` (after rerunning the benchmark) and commit both"


def test_the_readme_says_what_the_results_say() -> None:
    stale = check(README.read_text(encoding="utf-8"), generate())
    assert not stale, f"README blocks that disagree with the results: {', '.join(stale)}; {FIX}"


def test_every_results_file_is_in_the_readme() -> None:
    results = Results()
    generate(results)
    committed = {*results.bench_dir.glob("*.json"), *results.gpu_dir.glob("*.json")}
    assert committed - results.files_read == set(), "results no README block quotes"


def test_the_speed_model_check_is_todays() -> None:
    committed = json.loads(speed_model_check.OUT.read_text(encoding="utf-8"))
    now = json.loads(json.dumps(speed_model_check.build()))  # the same JSON round trip as --write
    assert committed == now, (
        "speed_model_check.json is stale: run python tests/bench/speed_model_check.py --write"
    )


def test_the_speed_model_check_covers_every_recorded_speed() -> None:
    runs = speed_model_check.build()["runs"]
    engine = json.loads((speed_model_check.BENCH / "engine_speed.json").read_text())
    records = json.loads((speed_model_check.BENCH / "speed_records.json").read_text())
    gpu = [
        json.loads(p.read_text())
        for n in speed_model_check.GPU_RESULTS
        if (p := speed_model_check.GPU / n).exists()
    ]
    expected = (
        len(engine["results"])
        + len(records["results"])
        + sum(
            sum(1 for s in j.get("speed", []) if "engine" in s and "llama_bench" in s)
            + sum(1 for ld in j.get("loads", {}).values() if ld.get("ok") and ld.get("gen_tok_s"))
            for j in gpu
        )
    )
    accuracy = json.loads((speed_model_check.BENCH / "estimate_accuracy.json").read_text())
    expected += sum(1 for c in accuracy["results"] if "measured_bytes" in c)
    assert len(runs) == expected
    # The synthetic files are rebuilt from the catalog: each must be the file the run measured.
    assert all(r["same_weights_as_run"] for r in runs if "same_weights_as_run" in r)
    for r in runs:
        for what in ("generation", "prompt"):
            if r[what]:
                assert r[what]["ratio"] == pytest.approx(r[what]["predicted"] / r[what]["measured"], rel=1e-2)


def _copy_results(tmp_path: Path) -> Results:
    real = Results()
    bench, gpu = tmp_path / "bench", tmp_path / "gpu"
    shutil.copytree(real.bench_dir, bench)
    shutil.copytree(real.gpu_dir, gpu)
    return Results(bench, gpu)


def _edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("file", "change", "blocks", "shown"),
    [
        ("bench/stop_latency.json", lambda j: j["latency_ms"].update(median=41.26), {"stop_latency"}, "41.3 ms"),
        ("bench/estimate_accuracy.json", lambda j: j.update(worst_abs_error=0.1234),
         {"estimate_accuracy"}, "worst 12.34 %"),
        ("bench/download_speed.json", lambda j: j["link_1_gbit_s"]["big-Q4_1.gguf"].update(per_round_ratio=[0.5, 1.5]),
         {"download_speed"}, "0.50–1.50"),
        ("gpu/h100.json", lambda j: j["loads"]["llama-3.1-8b-instruct-Q8_0.gguf|32768|6"]["after_decode"].update(
            device_used_bytes=j["loads"]["llama-3.1-8b-instruct-Q8_0.gguf|32768|6"]["used_before_bytes"] + 3 * 2**30),
         {"h100_table", "h100_summary"}, "| 3.00 / 10.15 |"),
        ("bench/speed_model_check.json", lambda j: j["summary"]["prompt"]["CPU"]["benchmark"].update(worst_abs_error=0.6),
         {"speed_model"}, "60.0 %"),
    ],
)  # fmt: skip
def test_a_changed_result_makes_its_blocks_stale(
    tmp_path: Path, file: str, change: Any, blocks: set[str], shown: str
) -> None:
    results = _copy_results(tmp_path)
    _edit(tmp_path / file, change)
    bodies = generate(results)
    assert set(check(README.read_text(encoding="utf-8"), bodies)) == blocks
    assert any(shown in bodies[b] for b in blocks), [bodies[b] for b in blocks]


def test_write_rewrites_only_the_stale_blocks(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = README.read_text(encoding="utf-8")
    block = find_blocks(text)["convert_speed"]
    broken = text[: block.body_start] + "| F16 | convert | 1.0 s | 1 MB | +0.0 % |\n" + text[block.body_end :]
    readme.write_text(broken, encoding="utf-8")
    assert write(readme, generate()) == ["convert_speed"]
    assert readme.read_text(encoding="utf-8") == text
    assert write(readme, generate()) == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a\n<!-- bench:x -->\nb\n", "<!-- bench:x --> is never closed"),
        ("a\n<!-- /bench:x -->\n", "<!-- /bench:x --> at line 2 closes a block that is not open"),
        ("<!-- bench:x -->\n<!-- bench:y -->\n<!-- /bench:y -->\n<!-- /bench:x -->\n", "opens inside x"),
        ("<!-- bench:x -->\n<!-- /bench:x -->\n<!-- bench:x -->\n<!-- /bench:x -->\n", "line 3 appears a second time"),
    ],
)  # fmt: skip
def test_broken_markers_are_named(text: str, says: str) -> None:
    with pytest.raises(ReadmeBlockError, match=says.replace("(", r"\(")):
        find_blocks(text)


def test_a_block_without_a_generator_or_a_generator_without_a_block_is_an_error() -> None:
    bodies = generate()
    text = README.read_text(encoding="utf-8")
    with pytest.raises(ReadmeBlockError, match="no block in the README for extra"):
        check(text, {**bodies, "extra": "x\n"})
    with pytest.raises(ReadmeBlockError, match="no generator for unknown"):
        check(text + "\n<!-- bench:unknown -->\n<!-- /bench:unknown -->\n", bodies)

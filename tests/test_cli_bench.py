"""``tailorlm bench`` as a user runs it (issue 19): a real model measured and kept, the advisor's speeds
calibrated by it and its plans corrected; every level of a model the user has, the ones that do not
fit skipped with the reason, a table and a chart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.library.levels import levels_of
from app.core.units import GIB
from tests.synthetic import quantize_gguf

pytestmark = pytest.mark.slow
SMALL = ("--prompt", "64", "--gen", "16", "--reps", "2", "--threads", "1", "--no-bandwidth")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300, check=False)  # fmt: skip


def _json(*args: str) -> Any:
    out = _cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, gemma3_path: Path) -> Path:
    """A download folder: SmolLM2 as Q4_1 and Q8_0, another model, and a file that is not a model."""
    folder = tmp_path_factory.mktemp("models")
    shutil.copyfile(smollm2_path, folder / "smollm2-q4_1.gguf")
    quantize_gguf(smollm2_path, folder / "smollm2-q8_0.gguf", "Q8_0", allow_requantize=True, nthread=1)
    shutil.copyfile(gemma3_path, folder / "gemma-3-270m.gguf")
    (folder / "broken.gguf").write_bytes(b"GGUF" + bytes(20))
    return folder


def test_a_bench_is_kept_and_calibrates_and_corrects_the_advice(smollm2_path: Path) -> None:
    before = _json("advise", str(smollm2_path), "--no-bandwidth")
    assert before["budget"]["speed_calibration"] == {}
    out = _json("bench", str(smollm2_path), "--ctx", "512", *SMALL)
    [run] = out["runs"]
    assert (run["n_ctx"], run["n_prompt"], run["n_gen"], run["reps"], run["depth"]) == (512, 64, 16, 2, 64)
    assert 0 < run["gen_tok_s"]["min"] <= run["gen_tok_s"]["median"] <= run["gen_tok_s"]["max"]
    assert run["prompt_tok_s"]["median"] > 0 and run["peak_ram_bytes"] > 50 << 20
    assert str(smollm2_path.parent) not in json.dumps(run["predicted"])
    assert out["calibration"]["gen_runs"] == 1 and out["calibration"]["factors"]
    after = _json("advise", str(smollm2_path), "--no-bandwidth")
    assert after["budget"]["speed_calibration"].keys() == out["calibration"]["factors"].keys()
    plans = {(p["quant"], p["n_ctx"]): p for p in after["plans"]}
    old = {(p["quant"], p["n_ctx"]): p for p in before["plans"]}
    q8 = plans[("Q8_0", 4096)]  # another file: calibrated by the machine's factors, not corrected
    assert q8["corrected"] is None and q8["tok_s"] != old[("Q8_0", 4096)]["tok_s"]
    near = plans[("Q4_1", 4096)]  # the same file at another context: corrected by the run at 512
    assert near["corrected"]["from"]["n_ctx"] == 512 and near["corrected"]["from"]["kind"] == "bench"
    assert near["corrected"]["ram_bytes"] > 0 and near["corrected"]["tok_s"] > 0
    ran = _json("advise", str(smollm2_path), "--ctx", "512", "--no-bandwidth")
    [measured] = [p for p in ran["plans"] if p["measured"] is not None]
    assert (measured["quant"], measured["measured"]["kind"]) == ("Q4_1", "bench")
    assert measured["measured"]["tok_s"] == run["gen_tok_s"]["median"]


def test_every_level_of_a_model_is_found_measured_and_charted(levels: Path) -> None:
    found = levels_of(levels / "smollm2-q4_1.gguf")
    assert [(lv.quant, lv.path.name) for lv in found] == [("Q8_0", "smollm2-q8_0.gguf"),
                                                          ("Q4_1", "smollm2-q4_1.gguf")]  # fmt: skip
    out = _cli("bench", str(levels / "smollm2-q4_1.gguf"), "--quant", "all", "--ctx", "512", *SMALL)
    assert out.returncode == 0, out.stderr
    table, chart = out.stdout.split("generation tok/s\n")
    assert "smollm2-q8_0.gguf" in table and "smollm2-q4_1.gguf" in table and "gemma" not in out.stdout
    bars = [line for line in chart.splitlines() if "#" in line]
    assert len(bars) == 2 and any(line.count("#") == 40 for line in bars)  # the fastest fills the chart


def test_a_level_that_does_not_fit_is_skipped_with_the_reason(levels: Path) -> None:
    ram = {}
    for name in ("smollm2-q4_1.gguf", "smollm2-q8_0.gguf"):
        advice = _json("advise", str(levels / name), "--ctx", "512", "--no-bandwidth")
        [plan] = [p for p in advice["plans"] if p["quant"] == advice["model"]["file_type"]]
        ram[name] = plan["ram_bytes"]
    between = (ram["smollm2-q4_1.gguf"] + ram["smollm2-q8_0.gguf"]) // 2
    reserve = str(3 * GIB - between)  # a 4 GiB machine keeps 1 GiB for the OS: `between` is left
    out = _json("bench", str(levels / "smollm2-q4_1.gguf"), "--quant", "Q8_0,Q4_1", "--ctx", "512",
                "--ram", "4GiB", "--reserve", reserve, *SMALL)  # fmt: skip
    assert [r["file"] for r in out["runs"]] == ["smollm2-q4_1.gguf"]
    [skipped] = out["skipped"]
    assert skipped["file"] == "smollm2-q8_0.gguf" and "cannot give it that" in skipped["reason"]
    only_q8 = _cli("bench", str(levels / "smollm2-q4_1.gguf"), "--quant", "Q8_0", "--ctx", "512", "--ram", "4GiB",
                   "--reserve", reserve, *SMALL)  # fmt: skip
    assert (
        only_q8.returncode == 1
        and "skipped smollm2-q8_0.gguf" in only_q8.stderr
        and "Traceback" not in only_q8.stderr
    )
    missing = _cli("bench", str(levels / "smollm2-q4_1.gguf"), "--quant", "Q2_K", *SMALL)
    assert missing.returncode == 2 and "No Q2_K file" in missing.stderr and "Q8_0, Q4_1" in missing.stderr

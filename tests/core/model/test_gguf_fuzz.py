"""The GGUF fuzz suite (issue 13): 10,000 mutated headers per run, read the way the app reads a file,
each judged by llama.cpp's own parser; and a few dozen through the command line.

The mutator is tests/gguf_fuzz.py (over tests/gguf_doc.py), the referee tests/gguf_referee.py; the
longer run is tests/bench/gguf_fuzz.py.
``TAILORLM_FUZZ_SEED`` picks another run (a failure names its seed and case; ``make_case`` replays it).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gguf_doc import Doc, encode, read_doc, write_doc
from tests.gguf_fuzz import (
    BYTES,
    CASE_LIMIT_S,
    STRUCTURAL,
    base_docs,
    make_case,
    run_case,
    run_fuzz,
    write_case,
)
from tests.gguf_referee import Verdict, referee, referee_library

CI_CASES = 10_000
CI_SEED = int(os.environ.get("TAILORLM_FUZZ_SEED", "13"))


@pytest.fixture(scope="module")
def bases(smollm2_path: Path, gemma3_path: Path) -> dict[str, Doc]:
    return base_docs(smollm2_path, gemma3_path)


def test_the_encoder_rewrites_real_headers_byte_for_byte(smollm2_path: Path, gemma3_path: Path) -> None:
    """The mutator's own reader and writer (not the code under test) reproduce both real headers,
    and every integer field it records holds the value it says it does."""
    for path in (smollm2_path, gemma3_path):
        doc = read_doc(path)
        raw, fields = encode(doc)
        with path.open("rb") as f:
            assert raw == f.read(len(raw))
        at = {f.kind: int.from_bytes(raw[f.offset : f.offset + f.width], "little") for f in fields[:3]}
        assert at == {"version": 3, "n_tensors": len(doc.rows), "n_kv": len(doc.kvs)}
        dims = [int.from_bytes(raw[f.offset : f.offset + 8], "little") for f in fields if f.kind == "dim"]
        assert dims == [d for r in doc.rows for d in r.dims]
        offsets = [struct.unpack_from("<Q", raw, f.offset)[0] for f in fields if f.kind == "tensor_offset"]
        assert offsets == [r.offset for r in doc.rows]


def test_the_referee_is_llama_cpps_parser(bases: dict[str, Doc], tmp_path: Path) -> None:
    good = write_doc(bases["tiny"], tmp_path / "good.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(good.read_bytes()[:100])  # cut inside the key/value pairs
    verdicts = referee([good, broken, good])
    assert [v.accepted for v in verdicts] == [True, False, True]
    assert verdicts[1].why.endswith("failed to read key-value pairs")  # llama.cpp's own last error line


def test_a_referee_that_dies_is_replaced_for_the_rest(bases: dict[str, Doc], tmp_path: Path) -> None:
    """A child that cannot even start (no library) dies on its first file; each file still gets a
    verdict, from a fresh child each time."""
    good = write_doc(bases["tiny"], tmp_path / "good.gguf")
    verdicts = referee([good, good], library=tmp_path / "missing.so")
    assert [(v.accepted, v.died) for v in verdicts] == [(False, True), (False, True)]
    assert "exit 1" in verdicts[0].why
    assert referee([good], library=referee_library()) == [Verdict(True)]


def test_cases_are_reproducible(bases: dict[str, Doc]) -> None:
    first = [make_case(bases, CI_SEED, i) for i in range(40)]
    assert [make_case(bases, CI_SEED, i) for i in range(40)] == first
    assert len({c.data for c in first}) > 35  # and they differ from each other


@pytest.mark.slow
def test_ten_thousand_mutated_headers(bases: dict[str, Doc]) -> None:
    report = run_fuzz(bases, seed=CI_SEED, cases=CI_CASES, plan_every=10)
    summary = report.summary()
    print(summary)  # shown with -rP / -s: the numbers of this run
    assert report.cases == CI_CASES
    assert report.crashes == 0, f"{summary}\n" + "\n".join(report.failures)
    assert report.stages["timeout"] == 0 and report.max_case_s < CASE_LIMIT_S, summary
    assert report.wrong_acceptances == 0, f"{summary}\n" + "\n".join(report.failures)
    assert report.referee["llama.cpp died"] == 0, summary
    # The run means something: every base and every kind of mutation was tried, real headers were
    # accepted and refused, models were planned, and the referee ran on every case.
    assert set(report.bases) == set(bases), summary
    assert set(STRUCTURAL) | set(BYTES) <= set(report.mutations), summary
    assert report.referee.total() == CI_CASES, summary
    assert report.referee["both accept"] > CI_CASES // 10 and report.clean_errors > CI_CASES // 2, summary
    assert report.planned > 100, summary


def _tailorlm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


@pytest.mark.slow
def test_the_command_line_refuses_mutated_files_in_one_line(bases: dict[str, Doc], tmp_path: Path) -> None:
    """``tailorlm advise`` on 20 mutated files: a refused file is exit code 2 and one line, never a
    traceback; an accepted one is a plan in JSON."""
    cases, refused, accepted = [], 0, 0
    for i in range(200):  # the first 16 refused and 4 accepted cases of this seed
        case = make_case(bases, CI_SEED, i)
        path = write_case(case, tmp_path / f"case-{i}.gguf")
        outcome = run_case(i, case, path, plan=False)
        if outcome.stage in ("header refused", "model refused") and refused < 16:
            refused += 1
        elif outcome.stage == "accepted" and accepted < 4:
            accepted += 1
        else:
            path.unlink()
            continue
        cases.append((path, outcome))
        if len(cases) == 20:
            break
    assert len(cases) == 20
    for path, outcome in cases:
        out = _tailorlm("advise", str(path), "--json", "--no-bandwidth", "--ctx", "512", "--ram", "8GB")
        assert "Traceback" not in out.stderr, (outcome.case, out.stderr)
        if outcome.stage == "accepted":
            assert out.returncode == 0, (outcome.case, out.stderr)
            assert json.loads(out.stdout)["plans"]
        else:
            assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, (
                outcome.case,
                out.stderr,
            )
            assert outcome.message.split(": ", 1)[1][:40] in out.stderr  # the same sentence as in-process

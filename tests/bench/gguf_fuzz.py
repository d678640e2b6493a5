"""Benchmark: the GGUF fuzz run of issue 13, longer than CI's — 0 uncaught exceptions, 0 runs over
5 s, and no header accepted that llama.cpp's own parser refuses.

The mutator is tests/gguf_fuzz.py and the referee tests/gguf_referee.py (the CI test runs 10,000
cases of seed 13 and plans every 10th accepted model); here every accepted model is planned
(``--plan-every 1``), the real headers' parse time is measured, and ``--cli`` files go through
``tailorlm advise`` as a user would run it (exit code 2 and one line for a refused file, a JSON
plan for an accepted one, never a traceback). Prints JSON with the counts, the spread of case
times and the machine.

    python tests/bench/gguf_fuzz.py [--cases 50000] [--seed 2026] [--plan-every 1] [--cli 36] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.model.gguf_header import read_gguf_file  # noqa: E402
from tests import models  # noqa: E402
from tests.bench.stop_latency import machine  # noqa: E402
from tests.gguf_doc import Doc  # noqa: E402
from tests.gguf_fuzz import FuzzReport, base_docs, make_case, run_case, run_fuzz, write_case  # noqa: E402


def parse_ms(path: Path, reps: int) -> dict[str, float]:
    """CPU time of one header parse (process time: the machine is shared and noisy)."""
    times = []
    for _ in range(reps):
        start = time.process_time()
        read_gguf_file(path)
        times.append((time.process_time() - start) * 1000)
    return {"median": round(statistics.median(times), 1), "min": round(min(times), 1), "reps": reps}


def cli_run(bases: dict[str, Doc], seed: int, n_files: int) -> dict[str, Any]:
    """``tailorlm advise FILE --json`` on the first ``n_files`` cases of ``seed`` (3 in 4 refused)."""
    counts: dict[str, Any] = {"files": 0, "refused_clean": 0, "accepted_json": 0, "failures": []}
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gguf-fuzz-cli-") as tmp:
        for i in range(n_files):
            case = make_case(bases, seed, i)
            path = write_case(case, Path(tmp) / f"case-{i}.gguf")
            expected = run_case(i, case, path, plan=False).stage
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "app.cli", "advise", str(path), "--json", "--no-bandwidth",
                                  "--ctx", "512", "--ram", "8GB"], capture_output=True, text=True, timeout=120,
                                 check=False, cwd=ROOT)  # fmt: skip
            seconds.append(time.perf_counter() - start)
            counts["files"] += 1
            one_line = len(out.stderr.strip().splitlines()) == 1
            if "Traceback" not in out.stderr and out.returncode == 2 and one_line and expected != "accepted":
                counts["refused_clean"] += 1
            elif out.returncode == 0 and expected == "accepted" and json.loads(out.stdout)["plans"]:
                counts["accepted_json"] += 1
            else:
                counts["failures"].append(f"case {i}: exit {out.returncode}: {out.stderr.strip()[-300:]}")
    return {**counts, "max_s": round(max(seconds), 2), "median_s": round(statistics.median(seconds), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--plan-every", type=int, default=1, help="plan every Nth accepted model")
    ap.add_argument("--cli", type=int, default=36, help="mutated files through `tailorlm advise`")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    smollm2, gemma3 = models.smollm2_path(), models.gemma3_path()
    before = machine()
    bases = base_docs(smollm2, gemma3)
    header_ms = {p.name: parse_ms(p, 15) for p in (smollm2, gemma3)}

    def progress(report: FuzzReport) -> None:
        print(f"{report.cases:,} cases, {report.seconds:.0f} s", file=sys.stderr, flush=True)

    report = run_fuzz(bases, seed=args.seed, cases=args.cases, plan_every=args.plan_every, on_batch=progress)
    result = {
        "benchmark": "gguf_fuzz",
        "machine": {**before, "load_avg_1min_after": os.getloadavg()[0]},
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "gguf": importlib.metadata.version("gguf"),
        "referee": "gguf_init_from_file(no_alloc=true, ctx=NULL) from llama_cpp/lib/libggml-base.so",
        "case_limit_s": 5.0,
        **report.to_dict(),
        "real_header_parse_ms": header_ms,
        "cli": cli_run(bases, args.seed, args.cli) if args.cli else None,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    ok = not (report.crashes or report.stages["timeout"] or report.wrong_acceptances)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: llama.cpp's own generation and prompt speed on this machine (CPU), as the records
``tests/bench/speed_model_check.py`` checks the speed model (``app/core/advice/speed.py``) against.

For each model × quantization llama-bench (built from the installed llama-cpp-python's llama.cpp by
``tests/bench/engine_speed.py``) measures pp512 (a 512-token prompt at an empty cache) and tg128 at
a depth of 512 (128 tokens written after a 512-token prompt, as in a chat), repeated, at each of
``--threads`` (2 and 1: one thread runs without the threads' synchronisation and with less
bandwidth, which the speed model's constants must tell apart). The cases are
the two real test models and synthetic models with the exact tensor shapes of catalog models
(random weights, quantized with llama.cpp's quantizer, cached as ``tests/bench/estimate_accuracy.py``
caches its own), one of them an MoE model cut to its first layers. The RAM bandwidth is measured
the app's way (``app/core/machine/bandwidth.py``) before the first case and after each.

The machine is shared: before each llama-bench run the benchmark waits for the other processes to
go quiet, and it records the share of the CPUs they took during the run (``engine_speed.Others``);
a run they took more than ``BUSY_SHARE`` of is repeated (``--attempts``), and the record keeps
every run, takes the median over the uncontended ones, and says when there were none.

Each record keeps the file's header summary (``tests/gpu/gpu_proof.header_summary``), so the check
re-predicts without the files. Prints JSON; ``--write`` stores it as
``tests/bench/results/speed_records.json``; the committed run holds the shared lock:

    flock /tmp/work/bench.lock python tests/bench/speed_records.py --write [--quick] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import models  # noqa: E402
from tests.bench.engine_speed import BUSY_SHARE, QUIET_SHARE, Others, llama_bench  # noqa: E402
from tests.bench.estimate_accuracy import synthetic_model  # noqa: E402
from tests.bench.estimate_accuracy_modern import case_file  # noqa: E402
from tests.bench.report import emit  # noqa: E402

OUT = ROOT / "tests" / "bench" / "results" / "speed_records.json"
N_PROMPT, N_GEN, DEPTH = 512, 128, 512
# (catalog id, quant): three families of real shapes (0.5-1.2B parameters: about a minute each on 2
# cores), four quantization families on one of them (Q4_K_M: Q4_K + Q6_K; Q6_K; Q8_0; Q4_1, which
# llamafile's sgemm does not take, as SmolLM2's: the check of speed.VEC_DOT_TYPES); Qwen2.5-0.5B's
# 896-wide rows make its Q4_K_M mostly Q5_0 (llama.cpp's fallback for rows not a multiple of 256).
SYNTHETIC = (
    ("qwen2.5-0.5b-instruct", "Q4_K_M"),
    ("qwen2.5-0.5b-instruct", "Q8_0"),
    ("llama-3.2-1b-instruct", "Q4_K_M"),
    ("llama-3.2-1b-instruct", "Q6_K"),
    ("llama-3.2-1b-instruct", "Q8_0"),
    ("llama-3.2-1b-instruct", "Q4_1"),
    ("gemma-3-1b-it", "Q4_K_M"),
    # hybrids: most layers hold a recurrent state instead of a KV cache (short convolution, Mamba-2,
    # Gated DeltaNet), whose fixed costs per layer differ from attention's
    ("lfm2-350m", "Q4_K_M"),
    ("granite-4.0-h-350m", "Q4_K_M"),
    ("qwen3.5-0.8b", "Q4_K_M"),
)
# An MoE model with its real layer shapes, cut to 4 of its 48 layers (6.2 GB F16 instead of 61): a
# token reads 8 of its 128 experts (~6 % of the expert bytes), which is what the speed model counts.
MOE = ("qwen3-30b-a3b", "Q4_K_M", 4)


def cases(quick: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"path": models.smollm2_path(), "origin": "real"},
        {"path": models.gemma3_path(), "origin": "real"},
    ]
    if quick:
        return out
    out += [{"path": case_file(c, q), "origin": "synthetic", "catalog_id": c} for c, q in SYNTHETIC]
    cid, quant, n_layers = MOE
    out.append({"path": synthetic_model(cid, quant, n_layers), "origin": f"synthetic, first {n_layers} layers",
                "catalog_id": cid})  # fmt: skip
    return out


def run_bench(exe: Path, model: Path, threads: int, reps: int, *args: str) -> list[float]:
    """tok/s of each repetition of one llama-bench invocation (``samples_ts``)."""
    cmd = [str(exe), "-m", str(model), "-t", str(threads), "-fa", "1", "-r", str(reps), "-o", "json", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [float(x) for x in json.loads(out.stdout)[0]["samples_ts"]]


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 3) for v in values]}  # fmt: skip


def measure(others: Others, run: Callable[[], list[float]], attempts: int) -> dict[str, Any]:
    """Wait for a quiet machine, run, and run again (``attempts`` in all) while other processes took
    more than ``BUSY_SHARE`` of the CPUs: ggml's threads wait for each other at every op, so a
    core taken away costs far more than its share. The median is over the uncontended runs (over
    all of them when none was, and the record says so); every run is kept."""
    runs: list[dict[str, Any]] = []
    while len(runs) < attempts and not any(r["others_cpu"] <= BUSY_SHARE for r in runs):
        quiet, waited_s = others.wait_for_quiet()
        samples, busy = others.during(run)
        runs.append({"tok_s": [round(x, 3) for x in samples], "others_cpu": round(busy, 3),
                     "others_cpu_before": round(quiet, 3), "waited_s": round(waited_s)})  # fmt: skip
    clean = [r for r in runs if r["others_cpu"] <= BUSY_SHARE]
    return {
        **spread([x for r in clean or runs for x in r["tok_s"]]),
        "contended": not clean,
        "invocations": runs,
    }


def copy_bandwidth_bytes_s(size: int = 128 << 20, threads: int = 2, reps: int = 6) -> float:
    """The app's probe before version 2, for comparison: a copy, (bytes read + written) / s."""
    import numpy as np

    src = np.ones(size, dtype=np.uint8)
    dst = np.empty_like(src)
    pairs = [(dst[i * size // threads : (i + 1) * size // threads], src[i * size // threads : (i + 1) * size // threads])
             for i in range(threads)]  # fmt: skip
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(reps + 1):
            start = time.perf_counter()
            list(pool.map(lambda pair: np.copyto(*pair), pairs))
            best = min(best, time.perf_counter() - start)
    return 2 * size / best


def machine(bandwidths: list[float], threads: list[int], copies: list[float]) -> dict[str, Any]:
    import importlib.metadata

    import llama_cpp
    import psutil

    from app.core.machine.cpu import detect_cpu

    cpu = detect_cpu()
    return {
        "cpu_model": cpu.model, "arch": cpu.arch, "physical_cores": cpu.physical_cores,
        "logical_cores": cpu.logical_cores, "cpu_isa": list(cpu.isa), "os": platform.platform(),
        "ram_total_bytes": psutil.virtual_memory().total,
        "ram_bandwidth_bytes_s": statistics.median(bandwidths),
        "ram_bandwidth": {"how": "app.core.machine.bandwidth.measure_ram_bandwidth_bytes_s, between rounds",
                          **spread(bandwidths)},
        "copy_bandwidth": {"how": "the app's probe before version 2 (a copy), beside it", **spread(copies)},
        "threads": threads,
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }  # fmt: skip


def main() -> int:
    from app.core.machine.bandwidth import measure_ram_bandwidth_bytes_s
    from tests.gpu.gpu_proof import header_summary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"store the result as {OUT.relative_to(ROOT)}")
    ap.add_argument("--threads", default="2,1",
                    help="comma-separated llama.cpp thread counts, each measured right after the other "
                         "for every model (default: this machine's 2 cores, then 1)")  # fmt: skip
    ap.add_argument("--reps", type=int, default=3, help="llama-bench repetitions per invocation")
    ap.add_argument("--attempts", type=int, default=3, help="invocations per measurement while contended")
    ap.add_argument("--quick", action="store_true", help="only the two real models")
    args = ap.parse_args()
    t0 = time.perf_counter()
    exe = llama_bench()
    todo = cases(args.quick)
    prep_s = time.perf_counter() - t0
    bandwidths, copies = [measure_ram_bandwidth_bytes_s()], [copy_bandwidth_bytes_s()]
    results, summaries = [], {}
    others = Others()
    counts = [int(t) for t in args.threads.split(",") if t]
    for c in todo:
        path: Path = c["path"]
        for threads in counts:
            pp = measure(others, partial(run_bench, exe, path, threads, args.reps, "-p", str(N_PROMPT), "-n", "0"),
                         args.attempts)  # fmt: skip
            tg = measure(others, partial(run_bench, exe, path, threads, args.reps,
                                         "-p", "0", "-n", str(N_GEN), "-d", str(DEPTH)), args.attempts)  # fmt: skip
            results.append({"model": path.name, "origin": c["origin"], "catalog_id": c.get("catalog_id"),
                            "threads": threads, "file_bytes": path.stat().st_size, "prompt_tok_s": pp,
                            "gen_tok_s": tg})  # fmt: skip
            print(json.dumps({"model": path.name, "threads": threads, "pp": pp["median"], "tg": tg["median"],
                              "contended": [pp["contended"], tg["contended"]]}), file=sys.stderr, flush=True)  # fmt: skip
        bandwidths.append(measure_ram_bandwidth_bytes_s())
        copies.append(copy_bandwidth_bytes_s())
        summaries[path.name] = header_summary(path)
    report = {
        "benchmark": "speed_records",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": f"llama-bench, flash attention on; pp: -p {N_PROMPT} -n 0; tg: -p 0 -n {N_GEN} -d {DEPTH}",
        "n_prompt": N_PROMPT, "n_gen": N_GEN, "depth": DEPTH, "reps": args.reps,
        "shared_machine": {"quiet_share": QUIET_SHARE, "busy_share": BUSY_SHARE, "attempts": args.attempts},
        "machine": machine(bandwidths, counts, copies),
        "prepare_s": round(prep_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
        "results": results,
        "models": summaries,
    }  # fmt: skip
    return emit(report, OUT, write=args.write)


if __name__ == "__main__":
    sys.exit(main())

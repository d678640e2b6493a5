"""``tailorlm bench MODEL``: measure the advisor's plan for a model here, as llama-bench does, and
keep the result (a profile) so the advisor's speeds for every model on this machine follow it.

One level (the file named) by default; ``--quant Q4_K_M,Q8_0`` or ``--quant all`` measures the
model's other quantizations the user has (:mod:`app.core.library.levels`), each with its own plan
— those that do not fit are skipped with the reason (``--force`` measures them anyway) — and
prints a table and a chart of the speeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.chat import add_plan_flags, chat_plan
from app.cli.common import gguf_path, machine_profile
from app.core.errors import DoesNotFitError, TailorError
from app.core.units import format_bytes

BAR_WIDTH = 40


def _levels(args: argparse.Namespace) -> list[Path]:
    path = gguf_path(args.model)
    if not args.quant:
        return [path]
    from app.core.library.levels import levels_of
    from app.core.library.registry import Library

    levels = levels_of(path, Library().models())
    if args.quant.lower() == "all":
        return [lv.path for lv in levels]
    wanted = [q.strip().upper() for q in args.quant.split(",") if q.strip()]
    have = {lv.quant.upper(): lv.path for lv in levels}
    missing = [q for q in wanted if q not in have]
    if missing:
        raise TailorError(f"No {', '.join(missing)} file of this model was found.",
                          hint=f"This model's levels here: {', '.join(lv.quant for lv in levels)}.")  # fmt: skip
    return [have[q] for q in wanted]


def _progress(name: str) -> Any:
    def show(stage: str, fraction: float) -> None:
        if sys.stderr.isatty():
            print(f"\r{name}: {stage} {fraction:4.0%}   ", end="", file=sys.stderr, flush=True)

    return show


def cmd_bench(args: argparse.Namespace) -> int:
    from app.core.advice.speed_calibration import calibration_for
    from app.engine import protocol as P
    from app.engine.bench import bench_plan

    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    levels = _levels(args)
    for path in levels:
        args.model = str(path)
        try:
            planned = chat_plan(args)  # the advisor's plan for this file, or the user's overrides
        except DoesNotFitError as exc:
            skipped.append({"file": path.name, "reason": exc.user_message()})
            print(f"tailorlm: skipped {path.name}: {exc}", file=sys.stderr)
            continue
        load = P.Load.from_plan(planned, n_threads=args.threads or 0)
        try:
            result = bench_plan(load, quant=planned.quant, model_name=_model_name(path), n_prompt=args.prompt,
                                n_gen=args.gen, reps=args.reps, budget_s=args.time, on_progress=_progress(path.name))  # fmt: skip
        except TailorError as exc:  # out of memory, a crash: recorded; the other levels still run
            if len(levels) == 1:
                raise
            skipped.append({"file": path.name, "reason": exc.user_message()})
            print(f"tailorlm: {path.name} failed: {exc.user_message()}", file=sys.stderr)
            continue
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if result.busy:
            print(f"tailorlm: other programs took {result.others_cpu_share:.0%} of the CPUs while {path.name} was "
                  "measured: the run is kept but does not calibrate the advisor; measure again when the "
                  "machine is quiet.", file=sys.stderr)  # fmt: skip
        runs.append({"file": path.name, "file_bytes": path.stat().st_size, "predicted_calibrated": {
            "tok_s": planned.plan.speed.tok_s, "prompt_tok_s": planned.plan.speed.prompt_tok_s,
            "calibrated": planned.plan.speed.calibrated}, **result.to_dict()})  # fmt: skip
    if not runs and not skipped:
        raise TailorError("Nothing was measured.")
    calibration = calibration_for(machine_profile(args))
    if args.json:
        print(json.dumps({"runs": runs, "skipped": skipped,
                          "calibration": calibration.to_dict() if calibration else None}, indent=2))  # fmt: skip
        return 0 if runs else 1
    if runs:
        _print_table(runs)
    if calibration is not None:
        factors = ", ".join(f"{k} ×{v:.2f}" for k, v in calibration.factors)
        print(f"\nThis machine's speed model is now calibrated from {calibration.gen_runs} benchmark runs "
              f"({', '.join(calibration.models)}): {factors}.")  # fmt: skip
    return 0 if runs else 1


def _model_name(path: Path) -> str:
    from app.core.library.header_facts import describe

    try:
        return str(describe([path])["name"] or path.stem)
    except TailorError:
        return path.stem


def _spread(d: dict[str, Any]) -> str:
    if d["median"] is None:
        return "-"
    return f"{d['median']:,.1f} ({d['min']:,.1f}-{d['max']:,.1f})"


def _print_table(runs: list[dict[str, Any]]) -> None:
    head = (f"{'file':34} {'ctx':>6} {'GPU':>4} {'prompt tok/s (min-max)':>24} {'gen tok/s (min-max)':>22} "
            f"{'predicted':>9} {'peak RAM':>9} {'load':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in runs:
        pred = r["predicted"]
        print(f"{r['file'][:34]:34} {r['n_ctx']:>6} {r['n_gpu_layers']:>4} {_spread(r['prompt_tok_s']):>24} "
              f"{_spread(r['gen_tok_s']):>22} {pred['tok_s'] if pred else 0:>9.1f} "
              f"{format_bytes(r['peak_ram_bytes']) if r['peak_ram_bytes'] else '-':>9} {r['load_s']:>5.1f}s")  # fmt: skip
        if r["cancelled"]:
            print("  (cancelled: the repetitions done so far)")
    n = runs[0]
    print(f"\nprompt: {n['n_prompt']} tokens into an empty cache; generation: {n['n_gen']} tokens after it; "
          f"{n['reps']} repetitions, median (min-max); predicted: the speed model before calibration.")  # fmt: skip
    if len(runs) > 1:
        top = max(r["gen_tok_s"]["median"] or 0 for r in runs) or 1.0
        print("\ngeneration tok/s")
        for r in runs:
            v = r["gen_tok_s"]["median"] or 0
            print(f"  {r['file'][:30]:30} {'#' * max(1, round(BAR_WIDTH * v / top)):{BAR_WIDTH}} {v:,.1f}")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure a model's speed and memory here (like llama-bench) and keep it")
    p.add_argument("model", help="a .gguf file or a library id (`tailorlm list`)")
    p.add_argument("--quant", metavar="Q,…|all",
                   help="measure these quantizations of the model (its other files here), or every one that fits")  # fmt: skip
    p.add_argument("--prompt", type=int, default=512, metavar="N", help="prompt tokens (default 512)")
    p.add_argument(
        "--gen", type=int, default=128, metavar="N", help="generated tokens after the prompt (default 128)"
    )
    p.add_argument("--reps", type=int, default=3, metavar="N", help="repetitions (default 3)")
    p.add_argument("--time", type=float, default=30.0, metavar="S",
                   help="seconds per level, load included (default 30); fewer repetitions when it runs out")  # fmt: skip
    add_plan_flags(p)
    p.set_defaults(func=cmd_bench)

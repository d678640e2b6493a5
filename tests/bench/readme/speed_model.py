"""The speed-model check's block, from ``tests/bench/results/speed_model_check.json``."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import pct, table
from tests.bench.readme.results import Results

# Issue 15's bars for |predicted / measured - 1|: median and worst.
TARGETS = {"generation": (0.15, 0.35), "prompt": (0.25, 0.50)}
_KINDS = {"benchmark": "benchmark", "first tokens": "first tokens (not a speed run)"}


def _summary_row(what: str, dev: str, kind: str, s: dict[str, Any] | None) -> list[str]:
    label = [what, dev, _KINDS[kind]]
    if s is None:
        return [*label, "0", "—", "—", "—", "no recorded run"]
    med, worst = TARGETS[what]
    met = s["median_abs_error"] <= med and s["worst_abs_error"] <= worst
    return [*label, str(s["n"]), pct(s["median_abs_error"], sign=False),
            f"{pct(s['worst_abs_error'], sign=False)}: {s['worst_run']}, `{s['worst_source']}`",
            f"{s['median_ratio']:.2f} ({s['p10_ratio']:.2f}–{s['p90_ratio']:.2f})",
            f"≤ {med:.0%} / {worst:.0%}: {'met' if met else '**not met**'}".replace("%", " %")]  # fmt: skip


def _pair(p: dict[str, float] | None) -> tuple[str, str]:
    if not p:
        return "—", "—"
    return f"{p['predicted']:,.1f} / {p['measured']:,.1f}", f"{p['ratio']:.2f}"


def speed_model(r: Results) -> str:
    j = r.bench("speed_model_check.json")
    c = j["speed_model"]
    summary = [
        _summary_row(what, dev, kind, j["summary"][what][dev][kind])
        for what in ("generation", "prompt") for dev in ("CPU", "GPU") for kind in _KINDS
    ]  # fmt: skip
    runs = []
    for x in j["runs"]:
        if x["kind"] != "benchmark":
            continue
        gen, pp = _pair(x["generation"]), _pair(x["prompt"])
        runs.append([x["run"], f"`{x['source'].rsplit('/', 1)[-1]}`", x["placement"], x["bound"], *gen, *pp])
    return "\n\n".join([
        f"Speed model as checked: GPU bandwidth × {c['GPU_BANDWIDTH_EFFICIENCY']}, CPU bandwidth × "
        f"{c['CPU_BANDWIDTH_EFFICIENCY']}, at least {c['CPU_LAYER_OVERHEAD_S'] * 1000:g} ms per layer on the CPU "
        f"and {c['GPU_LAYER_OVERHEAD_S'] * 1000:g} ms on the GPU, prompt = {c['CPU_PROMPT_FACTOR']:g}× (CPU) or "
        f"{c['GPU_PROMPT_FACTOR']:g}× (all layers on the GPU) generation. Error = predicted ÷ measured − 1; "
        "\"GPU\" is any run with layers on the GPU:",
        table(["speed", "device", "kind", "runs", "median \\|error\\|", "worst \\|error\\|: run",
               "predicted ÷ measured: median (p10–p90)", "target (issue 15)"], summary),
        "The benchmark runs, predicted / measured tok/s:",
        table(["run", "results", "placement", "bound", "generation", "ratio", "prompt", "ratio"], runs),
    ])  # fmt: skip

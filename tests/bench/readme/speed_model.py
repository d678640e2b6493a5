"""The speed-model check's block, from ``tests/bench/results/speed_model_check.json``."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import machine_words, pct, table
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
    target = f"≤ {med:.0%} / {worst:.0%}".replace("%", " %")
    verdict = ("met" if met else "**not met**") if kind == "benchmark" else "not a target"
    return [*label, str(s["n"]), pct(s["median_abs_error"], sign=False),
            f"{pct(s['worst_abs_error'], sign=False)}: {s['worst_run']}, `{s['worst_source']}`",
            f"{s['median_ratio']:.2f} ({s['p10_ratio']:.2f}–{s['p90_ratio']:.2f})",
            f"{target}: {verdict}"]  # fmt: skip


def _pair(p: dict[str, float] | None) -> tuple[str, str]:
    if not p:
        return "—", "—"
    return f"{p['predicted']:,.1f} / {p['measured']:,.1f}", f"{p['ratio']:.2f}"


# The type families of speed.gen_family and speed.prompt_family, in words.
_GEN = {"k": "K-quants", "block": "Q4_0/Q8_0/floats", "q5": "Q5_0", "vec": "Q4_1/Q5_1"}
_PROMPT = {"k": "K-quants", "repacked": "repacked Q4_0/Q4_K", "block": "Q8_0/Q5_0/Q4_0/floats",
           "vec": "Q4_1/Q5_1"}  # fmt: skip


def _per_family(values: dict[str, float], words: dict[str, str], fmt: str) -> str:
    """ "K-quants and Q4_0/Q4_1/Q8_0/floats 85 %, Q5_0/Q5_1 52 %": families of one value together."""
    groups: dict[float, list[str]] = {}
    for family, v in values.items():
        groups.setdefault(v, []).append(words[family])
    return ", ".join(f"{' and '.join(names)} {fmt.format(v)}" for v, names in groups.items())


def _model_words(c: dict[str, Any], fit: dict[str, Any]) -> str:
    return (
        "Speed model as checked (`app/core/advice/speed.py`): seconds per generated token = Σ over devices "
        "(bytes read ÷ (bandwidth × efficiency of the type family) + layers × a fixed cost per layer), "
        f"plus {c['GPU_TOKEN_S'] * 1e3:g} ms a token when a GPU takes part. "
        f"GPU: {_per_family(c['GPU_BANDWIDTH_EFFICIENCY'], _GEN, '{:.0%}')} of the spec bandwidth, "
        f"{c['GPU_LAYER_S'] * 1e6:g} µs per layer; CPU: {_per_family(c['CPU_BANDWIDTH_EFFICIENCY'], _GEN, '{:.0%}')} "
        f"of the measured copy bandwidth, {c['CPU_LAYER_S'] * 1e3:g} ms per layer "
        f"({c['CPU_RECURRENT_LAYER_S'] * 1e3:g} ms for a layer with a recurrent state). A prompt token costs 2 "
        "FLOPs per weight it multiplies: on the CPU at threads × "
        f"({_per_family({k: v / 1e9 for k, v in c['CPU_CORE_FLOPS'].items()}, _PROMPT, '{:g}')} GFLOP/s "
        f"per AVX-512 core) plus {c['CPU_PROMPT_LAYER_CORE_S'] * 1e6:g} core-µs per layer and token "
        f"({c['CPU_PROMPT_RECURRENT_LAYER_CORE_S'] * 1e6:g} for a recurrent one), on the GPU at "
        f"{c['GPU_PROMPT_EFFICIENCY']:.0%} of its FP16 tensor throughput plus {c['GPU_PROMPT_LAYER_S'] * 1e6:g} µs "
        f"per layer and token. {fit['constants']} constants are fitted (least squares on relative error) to "
        f"{fit['records']} measurements of {fit['configurations']} model × quantization × machine "
        f"({fit['fitted']['generation']} generation, {fit['fitted']['prompt']} prompt); "
        f"{fit['held_out']['generation']} generation and {fit['held_out']['prompt']} prompt measurements "
        "were held out; the other constants come from data sheets, named in the module. Error = predicted "
        '÷ measured − 1; "GPU" is any run with layers on the GPU.'
    ).replace("%", " %")


def _bandwidths(rows: list[dict[str, Any]]) -> str:
    """The RAM bandwidth each CPU results file was predicted with: its own record's."""
    seen = {x["source"].rsplit("/", 1)[-1]: x["cpu_bandwidth_bytes_s"] for x in rows
            if x["kind"] == "benchmark" and x["device"] == "CPU"}  # fmt: skip
    return ", ".join(f"`{f}` {bw / 1e9:.1f} GB/s" for f, bw in seen.items())


def _fitted(x: dict[str, Any]) -> str:
    parts = [w for w in ("generation", "prompt") if x[w] and x[f"fitted_{w}"]]
    return " and ".join(parts) if parts else "held out"


def _records_words(rec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m, bw = rec["machine"], rec["machine"]["ram_bandwidth"]
    contended = sum(x[k]["contended"] for x in rec["results"] for k in ("gen_tok_s", "prompt_tok_s"))
    return (
        f"The CPU records (`speed_records.json`): llama-bench pp{rec['n_prompt']} and tg{rec['n_gen']} at a "
        f"depth of {rec['depth']}, {rec['reps']} repetitions, {m['threads']} threads, each run after the "
        f"machine went quiet, {contended} of {2 * len(rec['results'])} measurements contended; "
        f"{machine_words(m)}, RAM bandwidth {bw['median'] / 1e9:.1f} GB/s by the app's probe (median of "
        f"{len(bw['runs'])}, {bw['min'] / 1e9:.1f}–{bw['max'] / 1e9:.1f}). Each CPU run is predicted with "
        f"its own record's bandwidth: {_bandwidths(rows)}."
    )


def speed_model(r: Results) -> str:
    j = r.bench("speed_model_check.json")
    summary = [
        _summary_row(what, dev, kind, j["summary"][what][dev][kind])
        for what in ("generation", "prompt") for dev in ("CPU", "GPU") for kind in _KINDS
    ]  # fmt: skip
    runs = []
    for x in j["runs"]:
        if x["kind"] != "benchmark":
            continue
        gen, pp = _pair(x["generation"]), _pair(x["prompt"])
        runs.append([x["run"], f"`{x['source'].rsplit('/', 1)[-1]}`", x["placement"], x["bound"], *gen, *pp,
                     _fitted(x)])  # fmt: skip
    return "\n\n".join([
        _model_words(j["speed_model"], j["fit"]),
        _records_words(r.bench("speed_records.json"), j["runs"]),
        table(["speed", "device", "kind", "runs", "median \\|error\\|", "worst \\|error\\|: run",
               "predicted ÷ measured: median (p10–p90)", "target (issue 15)"], summary),
        "The benchmark runs, predicted / measured tok/s:",
        table(["run", "results", "placement", "bound", "generation", "ratio", "prompt", "ratio", "fitted to"], runs),
    ])  # fmt: skip

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
_PROMPT = {"k": "K-quants", "repacked": "repacked Q4_0/Q4_K", "block": "Q8_0/Q4_0/floats", "q5": "Q5_0",
           "vec": "Q4_1/Q5_1"}  # fmt: skip
_KIND = {"shortconv": "short convolution", "mamba2": "Mamba-2", "gated_delta_net": "Gated DeltaNet"}


def _per_family(values: dict[str, float], words: dict[str, str], fmt: str) -> str:
    """ "K-quants and Q4_0/Q4_1/Q8_0/floats 85 %, Q5_0/Q5_1 52 %": families of one value together."""
    groups: dict[float, list[str]] = {}
    for family, v in values.items():
        groups.setdefault(v, []).append(words[family])
    return ", ".join(f"{' and '.join(names)} {fmt.format(v)}" for v, names in groups.items())


def _costs(c: dict[str, float], prefix: str, words: dict[str, str], scale: float, fmt: str) -> str:
    return _per_family(
        {k.split(":", 1)[1]: v * scale for k, v in c.items() if k.startswith(prefix)}, words, fmt
    )


def _model_words(c: dict[str, Any], fit: dict[str, Any]) -> str:
    g, p = c["CPU_GEN_COSTS"], c["CPU_PROMPT_COSTS"]
    rates = {k.split(":", 1)[1]: 1 / v / 1e9 for k, v in p.items() if k.startswith("flop:") and v}
    return (
        "Speed model as checked (`app/core/advice/speed.py`): seconds per generated token = Σ over devices of "
        "reading, computing and fixed costs there. GPU: bytes read ÷ "
        f"({_per_family(c['GPU_BANDWIDTH_EFFICIENCY'], _GEN, '{:.0%}')} of the spec bandwidth) + "
        f"{c['GPU_LAYER_S'] * 1e6:g} µs per layer, plus {c['GPU_TOKEN_S'] * 1e3:g} ms a token when a GPU takes "
        f"part. CPU: bytes read ÷ min({c['CPU_READ_EFFICIENCY']:.0%} of the measured read bandwidth, threads × "
        f"{c['CPU_CORE_BANDWIDTH'] / 1e9:g} GB/s) + the dot products' instructions ÷ threads "
        f"({_costs(g, 'weight:', _GEN, 1e12, '{:.3g}')} core-ps per weight; "
        f"{_costs(g, 'row:', _GEN, 1e9, '{:.3g}')} core-ns per row) + per layer {g['layer'] * 1e6:.3g} core-µs "
        f"÷ threads and {g['layer sync'] * 1e6:.3g} µs of barriers at 2 threads, × log2(threads) (a recurrent "
        f"layer: {g['recurrent sync'] * 1e6:.3g} µs of barriers and, per element of its state, "
        f"{_costs(g, 'state:', _KIND, 1e12, '{:.3g}')} core-ps). A prompt token costs 2 FLOPs per weight it "
        f"multiplies: on the CPU at threads × ({_per_family(rates, _PROMPT, '{:.3g}')} GFLOP/s per AVX-512 "
        f"core; one thread × {c['CPU_SOLO_SPEEDUP']:.2f}) plus {p['layer'] * 1e6:.3g} core-µs per layer "
        f"({p['recurrent layer'] * 1e6:.3g} for a recurrent one, plus {_costs(p, 'state:', _KIND, 1e12, '{:.3g}')} "
        f"core-ps per element of its state), on the GPU at {c['GPU_PROMPT_EFFICIENCY']:.0%} of its FP16 tensor "
        f"throughput plus {c['GPU_PROMPT_LAYER_S'] * 1e6:g} µs per layer and token. {fit['constants']} constants "
        f"are fitted (least squares on relative error) to {fit['records']} measurements of "
        f"{fit['configurations']} model × quantization × threads × machine ({fit['fitted']['generation']} "
        f"generation, {fit['fitted']['prompt']} prompt); {fit['held_out']['generation']} generation and "
        f"{fit['held_out']['prompt']} prompt measurements were held out; the other constants come from data "
        'sheets, named in the module. Error = predicted ÷ measured − 1; "GPU" is any run with layers on the GPU.'
    ).replace("%", " %")


def _bandwidths(rows: list[dict[str, Any]]) -> str:
    """The RAM bandwidth each CPU results file was predicted with: its own record's."""
    seen = {x["source"].rsplit("/", 1)[-1]: x["cpu_bandwidth_bytes_s"] for x in rows
            if x["kind"] == "benchmark" and x["device"] == "CPU"}  # fmt: skip
    return ", ".join(f"`{f}` {bw / 1e9:.1f} GB/s" for f, bw in seen.items())


def _fitted(x: dict[str, Any]) -> str:
    parts = [w for w in ("generation", "prompt") if x[w] and x[f"fitted_{w}"]]
    return " and ".join(parts) if parts else "held out"


def _threads(t: int | list[int]) -> str:
    counts = t if isinstance(t, list) else [t]
    return " and ".join(str(n) for n in counts) + (" thread" if counts == [1] else " threads")


def _records_words(rec: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    m, bw = rec["machine"], rec["machine"]["ram_bandwidth"]
    contended = sum(x[k]["contended"] for x in rec["results"] for k in ("gen_tok_s", "prompt_tok_s"))
    return (
        f"The CPU records (`speed_records.json`): llama-bench pp{rec['n_prompt']} and tg{rec['n_gen']} at a "
        f"depth of {rec['depth']}, {rec['reps']} repetitions, at {_threads(m['threads'])}, each run after the "
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

"""Blocks from the GPU proofs' recorded results (``tests/gpu/results``)."""

from __future__ import annotations

import statistics
from typing import Any

from tests.bench.readme.fmt import GIB, pct, spread, table
from tests.bench.readme.results import Results

# The H100 rows the README shows (every row is in tests/gpu/README.md): each model and quant at 4k
# with the whole card, and the plans that split the model at the smaller VRAM budgets.
H100_ROWS = (
    "llama-3.2-3b-instruct-Q4_K_M.gguf|4096|29",
    "llama-3.2-3b-instruct-Q4_K_M.gguf|32768|12",
    "llama-3.2-3b-instruct-Q8_0.gguf|4096|29",
    "llama-3.2-3b-instruct-Q8_0.gguf|32768|26",
    "llama-3.1-8b-instruct-Q4_K_M.gguf|4096|33",
    "llama-3.1-8b-instruct-Q4_K_M.gguf|4096|15",
    "llama-3.1-8b-instruct-Q4_K_M.gguf|32768|23",
    "llama-3.1-8b-instruct-Q8_0.gguf|4096|33",
    "llama-3.1-8b-instruct-Q8_0.gguf|32768|33",
    "llama-3.1-8b-instruct-Q8_0.gguf|32768|6",
)
_BUDGET = {"real": "card"}


def _gib(n: int | None) -> str:
    return f"{n / GIB:.2f}" if n is not None else "—"


def _pct(x: float | None) -> str:
    return pct(x) if x is not None else "—"


def _name(model_id: str) -> str:
    return "-".join(
        p.upper() if p[0].isdigit() else p.capitalize() for p in model_id.removesuffix("-instruct").split("-")
    )


def _speed_cell(s: dict[str, Any] | None) -> str:
    if not s or "ratio" not in s:
        return ""
    e, b = s["engine"], s["llama_bench"]
    return (f"{e['gen_tok_s']:.1f} ({spread(e['gen_tok_s_runs'], 1)}) / {b['gen_tok_s']:.1f} ± "
            f"{b['stddev_tok_s']:.1f} ({s['ratio']:.2f}×)")  # fmt: skip


def h100_table(r: Results) -> str:
    from tests.gpu.gpu_proof import report  # today's estimator on the recorded files

    j = r.gpu("h100.json")
    rows_by_load = {row["load"]: row for row in report(j)["rows"]}
    speed = {(s["model"], s["n_ctx"], s["n_gpu_layers"]): s for s in j.get("speed", [])}
    budgets: dict[str, list[str]] = {}
    cases: dict[str, dict[str, Any]] = {}
    for c in j["cases"]:
        budgets.setdefault(c["load"], []).append(_BUDGET.get(c["vram"], c["vram"]))
        cases.setdefault(c["load"], c)
    rows = []
    for key in H100_ROWS:
        c, m, row = cases[key], j["loads"][key], rows_by_load[key]
        rows.append([
            _name(c["model_id"]), c["quant"], f"{c['n_ctx'] // 1024}k", ", ".join(budgets[key]),
            str(m["n_gpu_layers"]),
            f"{_gib(row.get('predicted_vram_bytes'))} / {_gib(row.get('predicted_rss_bytes'))}",
            f"{_gib(row.get('measured_vram_bytes'))} / {_gib(row.get('measured_rss_bytes'))}",
            f"{_pct(row.get('vram_error'))} / {_pct(row.get('rss_error'))}",
            _speed_cell(speed.get((m["model"], m["n_ctx"], m["n_gpu_layers"]))),
        ])  # fmt: skip
    head = ["model", "quant", "ctx", "VRAM budget", "GPU layers", "predicted VRAM / RAM (GiB)",
            "measured VRAM / RSS (GiB)", "error VRAM / RAM", "tok/s engine (runs) / llama-bench ± sd"]  # fmt: skip
    return "\n\n".join([f"Selected rows of the {len(j['cases'])} cases (all in `tests/gpu/README.md`):",
                        table(head, rows)])  # fmt: skip


def _host_ms_per_token(s: dict[str, Any]) -> float:
    return 1000 / s["engine"]["gen_tok_s"] - 1000 / s["llama_bench"]["gen_tok_s"]


def h100_summary(r: Results) -> str:
    from tests.gpu.gpu_proof import report

    j, first = r.gpu("h100.json"), r.gpu("h100-before-fix.json")
    s = report(j)["summary"]
    before = first["report_at_run"]["summary"]  # the first run's own predictions, before the fixes
    loaded = "every one loaded" if s["plan_loads_ok"] == s["plan_loads"] else f"{s['plan_loads_ok']} loaded"
    runs = sorted((first, j), key=lambda x: x["started"])
    ratios = [[x["ratio"] for x in run["speed"] if "ratio" in x] for run in runs]
    every = [x for run in runs for x in run["speed"] if "ratio" in x]
    on_gpu = [_host_ms_per_token(x) for x in every if x["vram"] == "real"]
    fv = j["free_vram"]
    loads = [c["load"] for c in fv["cases"]] + [
        c["recommended"]["load"] for c in fv["cases"] if "recommended" in c
    ]
    all_loaded = all(j["loads"][k]["ok"] for k in loads)
    kv_oom = next(o["error"] for o in fv["oom"] if "KV cache" in o["error"])
    per_run = ", ".join(
        f"the {nth} run {spread(rs)}"
        for nth, rs in zip(("first", "second", "third", "fourth"), ratios, strict=False)
    )
    return (
        f"The {len(j['cases'])} cases asked for {s['plan_loads']} distinct loads and {loaded}: VRAM error "
        f"median {pct(s['vram']['median_abs'], sign=False)}, worst {pct(s['vram']['worst_abs'], sign=False)}; "
        f"RAM median {pct(s['rss']['median_abs'], sign=False)}, worst {pct(s['rss']['worst_abs'], sign=False)} "
        "(today's estimator on the recorded files; the first run's own predictions, before the CUDA fixes in "
        "`estimate.py` — GPU context and compute buffers at 0 layers, no CPU repacking with a GPU, op-offload "
        "buffers, the pinned host buffer, CUDA's host RSS — were "
        f"{pct(before['rss']['median_abs'], 0, sign=False)} / {pct(before['rss']['worst_abs'], 0, sign=False)} "
        "off for RAM). Engine vs llama-bench with the same layers, threads and depth: "
        f"{spread([x['ratio'] for x in every])}×, median {statistics.median(x['ratio'] for x in every):.2f} over "
        f"{len(runs)} runs ({per_run}); with every layer on the GPU the engine spends "
        f"{min(on_gpu):.2f}–{max(on_gpu):.2f} ms more per token than llama-bench on the host, which shows most on "
        f"the fastest model. With another process holding all but {fv['hw_gpus'][0]['vram_free_bytes'] / GIB:.2f} "
        f"GiB, the advisor planned for the free {fv['cases'][0]['budget_vram_bytes'] / GIB:.2f} GiB and "
        f"{'every plan loaded' if all_loaded else 'not every plan loaded'}; a plan that cannot fit fails as "
        f'"{kv_oom[kv_oom.index("CUDA out of memory") :]}", and the engine loads the next plan.'
    )


def h200_probe(r: Results) -> str:
    j = r.gpu("h200-probe.json")
    p, smp, plans = j["probe"], j["sampler"], j["planner"]["plans"]
    gpu = p["report"]["nvidia_gpus"][0]
    checks = p["checks"]
    as_smi = all(checks[k] for k in ("name_matches_smi", "driver_matches_smi", "vram_total_matches_smi"))
    children = p["probe_children"]["after_detect2_and_probe3"]
    rows = [[pl["case"], str(pl["n_gpu_layers"]), f"{pl['pred_vram_mib']:.0f}",
             f"{pl['nvml_process_after_gen_mib']:.0f}", f"{pl['error_pct_after_gen']:+.1f} %"] for pl in plans]  # fmt: skip
    n_ctx = {pl["n_ctx"] for pl in plans}
    return "\n\n".join([
        f"Driver {gpu['driver_version']}. The probe child found the {gpu['name'].removeprefix('NVIDIA ')} "
        f"({'VRAM, driver and compute capability as nvidia-smi says' if as_smi else 'not as nvidia-smi says'}) "
        f"and CUDA offload in {p['probe_s']:.1f} s; `detect_machine` twice and the probe again started "
        f"{'one child' if children == 1 else f'{children} children'} in all"
        f"{' (a cache hit after that)' if checks['second_call_cache_hit'] else ''}. The shared sampler "
        f"attributed {smp['monitor_child_vram_mib']:.0f} MiB to the model process — llama.cpp's CUDA buffers "
        f"({smp['llama_cuda_buffers_mib']:.0f} MiB) plus {smp['child_vram_minus_buffers_mib']:.0f} MiB of CUDA "
        f"context, within {abs(smp['child_vram_vs_used_delta_pct']):.1f} % of the card's own rise — the figure "
        "the status bar shows. `plan_chat` with the machine's budget, each plan loaded (synthetic "
        f"{_name(j['model'])} shapes, {'/'.join(f'{n:,}' for n in sorted(n_ctx))}-token context; VRAM of the "
        "process after a ~520-token prompt, in MiB):",
        table(["file, plan", "GPU layers", "predicted", "measured", "error"], rows),
    ])  # fmt: skip


def h200_speed(r: Results) -> str:
    """Greedy and default sampling through the engine vs llama-bench, all layers on the GPU."""
    j = r.gpu("h200-speed.json")
    gpu = j["hw"]["gpus"][0]
    rows, raws = [], []
    sampled, greedy = [], []
    for s in j["speed"]:
        if "engine" not in s:
            continue
        e, lb = s["engine"], s["llama_bench"]
        sampled.append(e["sampled_over_greedy"]["median"])
        greedy.append(s["greedy_over_llama_bench"])
        g, sm = e["gen_tok_s_runs"], e["sampled_gen_tok_s_runs"]
        ratio = e["sampled_over_greedy"]
        rows.append([
            f"{_name(s['model_id'])} {s['quant']}",
            f"{lb['gen_tok_s']:.0f} / {lb['prompt_tok_s']:,.0f}",
            f"{statistics.median(g):.0f}",
            f"{statistics.median(sm):.0f}",
            f"**{ratio['median']:.2f}** ({spread(sorted(ratio['runs'])[1:-1])})",
            f"**{s['greedy_over_llama_bench']:.2f}**",
            f"{e['prompt_tok_s']:,.0f}",
        ])  # fmt: skip
        if "raw" in s and "argmax" in s["raw"]:
            raw = s["raw"]
            graph = (
                f"greedy in the graph {raw['greedy in the graph']['median']:.0f}, "
                if "greedy in the graph" in raw
                else ""
            )
            ph = raw.get("phases_us", {})
            numpy_pick = (f", its numpy fallback {ph['fast sampler (numpy)']['pick']:.0f} µs"
                          if "fast sampler (numpy)" in ph else "")  # fmt: skip
            pick = (f" (picking a token: argmax {ph['argmax']['pick']:.0f} µs, fast sampler "
                    f"{ph['fast sampler']['pick']:.0f} µs{numpy_pick}; `llama_decode` returns in "
                    f"{ph['argmax']['decode call']:.0f} µs, the GPU is waited for {ph['argmax']['wait']:,.0f} µs)"
                    ) if ph else ""  # fmt: skip
            numpy_rate = (f", its numpy fallback {raw['fast sampler (numpy)']['median']:.0f}"
                          if "fast sampler (numpy)" in raw else "")  # fmt: skip
            raws.append(
                f"{_name(s['model_id'])} ({raw['n_vocab']:,} tokens): {graph}host argmax {raw['argmax']['median']:.0f}, "
                f"fast sampler {raw['fast sampler']['median']:.0f}{numpy_rate}, llama.cpp's chain on the host "
                f"{raw['llama.cpp chain']['median']:.0f}, llama.cpp's backend sampling of the chain "
                f"{raw['backend sampling']['median']:.0f} tok/s{pick}"
            )
    header = ["model", "llama-bench tg / pp512", "engine greedy tg", "engine default sampling tg",
              "sampled ÷ greedy (rounds)", "greedy ÷ llama-bench", "engine pp"]  # fmt: skip
    return (
        f"{gpu['name']}, driver {gpu['driver_version']}, {j['threads']} threads, all layers on the GPU; "
        f"{j['speed'][0]['engine']['n_gen']} tokens after a {j['speed'][0]['engine']['depth']}-token prompt, "
        f"5 interleaved rounds, medians (tok/s); in brackets the middle three rounds of sampled ÷ greedy"
        + (
            " (one round of a Qwen run is a timing artifact, see the JSON's timing_note)"
            if "timing_note" in j
            else ""
        )
        + f". Engine: {j['engine_sampler']}.\n\n"
        + table(header, rows)
        + "\n\nThe host cost of each way to pick a token, in one process over the same decode loop (256 "
        "tokens, default chain): "
        + "; ".join(raws)
        + f". Targets (issue 15): default sampling ≥ 0.95 × greedy on the GPU — {_met(sampled, 0.95)}; "
        f"greedy ≥ 0.95 × llama-bench — {_met(greedy, 0.95)}."
    )


def _met(values: list[float], target: float) -> str:
    n_met = sum(v >= target for v in values)
    if n_met == len(values):
        return f"met in all {len(values)} runs"
    return f"**not met** in {len(values) - n_met} of {len(values)} runs (medians {min(values):.2f}–{max(values):.2f})"

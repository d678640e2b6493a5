"""Issue 16's blocks: the expert-offload proof on the GPU (``tests/gpu/results/h200-moe.json``) and
the memory of MoE and hybrid models on this CPU (``estimate_accuracy_modern.json``)."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import GIB, machine_words, mib, pct, table
from tests.bench.readme.results import Results

FILE = "h200-moe.json"
TARGETS = {"vram": (0.03, 0.06), "rss": (0.03, 0.06), "generation": (0.15, 0.35), "prompt": (0.25, 0.50)}


def _placement(ngl: int, moe: int, n_layer: int) -> str:
    if moe >= n_layer:
        return "all experts in RAM, the rest on the GPU (`--cpu-moe`)"
    if moe:
        return f"experts of {moe} layers in RAM, the rest on the GPU (`--n-cpu-moe {moe}`)"
    return f"layer split: {ngl} of {n_layer + 1} layers on the GPU"


def _met(name: str, s: dict[str, Any]) -> str:
    med, worst = TARGETS[name]
    ok = s["median_abs"] <= med and s["worst_abs"] <= worst
    return f"{pct(s['median_abs'], sign=False)} / {pct(s['worst_abs'], sign=False)} (target ≤ {med:.0%} / {worst:.0%}: {'met' if ok else 'not met'})"


def h200_moe(results: Results) -> str:
    from tests.gpu.moe_proof import report

    j = results.gpu(FILE)
    rep = report(j)
    s = rep["summary"]
    n_layer = int(j["models"][j["model"]]["metadata"]["qwen3moe.block_count"])
    budgets = {key: [b for b, v in j["budgets"].items() if f"{v['plan']['n_gpu_layers']}|{v['plan']['moe_cpu_layers']}" == key]
               for key in j["loads"]}  # fmt: skip
    rows = []
    for r in rep["rows"]:
        picked = ", ".join(f"**pick at {b}**" for b in budgets[r["load"]])
        rows.append([
            _placement(r["n_gpu_layers"], r["moe_cpu_layers"], n_layer) + (f" — {picked}" if picked else ""),
            f"{r['predicted_vram_bytes'] / GIB:.2f} / {r['measured_vram_bytes'] / GIB:.2f} ({pct(r['vram_error'])})",
            f"{r['predicted_rss_bytes'] / GIB:.2f} / {r['measured_rss_bytes'] / GIB:.2f} ({pct(r['rss_error'])})",
            f"{r['gen_tok_s']:.1f}", f"{r['bench_gen_tok_s']:.1f}", f"{r['engine_over_bench']:.2f}",
            f"{r['predicted_gen_tok_s']:.1f}", f"{r['bench_prompt_tok_s']:,.0f} / {r['predicted_prompt_tok_s']:,.0f}",
        ])  # fmt: skip
    head = ["placement", "VRAM GiB predicted / measured", "RSS GiB predicted / measured", "engine tg", "llama-bench tg",
            "engine ÷ llama-bench", "predicted tg", "llama-bench pp512 / predicted"]  # fmt: skip
    picks = []
    by_load = {r["load"]: r for r in rep["rows"]}
    for b, p in s["picks"].items():
        free = j["budgets"][b]["free_bytes"]
        pick = by_load[p["pick"]]
        budget_rows = [by_load[f"{n}|{m}"] for n, m in j["budgets"][b]["placements"]]
        best = max(budget_rows, key=lambda r: r["gen_tok_s"])
        rank = (
            "the fastest of the placements weighed"
            if best is pick
            else f"not the fastest ({best['load']} was)"
        )
        over = pick["measured_vram_bytes"] - free
        room = (f"measured {pick['measured_vram_bytes'] / GIB:.2f} GiB, {over / (1 << 20):,.0f} MiB over the plannable "
                f"{free / GIB:.2f} GiB (inside the card's 512 MiB reserve)" if over > 0
                else f"measured {pick['measured_vram_bytes'] / GIB:.2f} GiB of {free / GIB:.2f} GiB plannable")  # fmt: skip
        picks.append(
            f"{b}: {_placement(pick['n_gpu_layers'], pick['moe_cpu_layers'], n_layer)}, {rank}; {room}"
        )
    ratios = [r["engine_over_bench"] for r in rep["rows"] if "engine_over_bench" in r]
    return "\n\n".join([
        f"{j['hw']['gpus'][0]['name']}, {j['threads']} threads, Qwen3-30B-A3B shapes (48 layers, 128 experts, 8 used) "
        f"as Q4_K_M, {j['n_ctx']:,}-token context; VRAM is NVML's used memory and RSS the model process's after a "
        "512-token prompt and 8 tokens; tg: 64 tokens at a depth of 512 (tok/s; engine timed in the app, two rounds; "
        "llama-bench with the same `-ngl` and `-ncmoe`, two repetitions); predictions by today's estimator and "
        f"speed model on the recorded machine. Recorded {j.get('finished', '?')[:10]}.",
        table(head, rows),
        f"Errors, median / worst over the {s['loads_ok']} loads: VRAM {_met('vram', s['vram'])}; RSS {_met('rss', s['rss'])}; "
        f"generation vs the engine {_met('generation', s['generation'])}; prompt vs llama-bench {_met('prompt', s['prompt'])}. "
        f"Engine ÷ llama-bench {min(ratios):.2f}–{max(ratios):.2f} (target ≥ 0.95: "
        f"{'met' if min(ratios) >= 0.95 else f'not met in {sum(x < 0.95 for x in ratios)} of {len(ratios)}'}). "
        "The advisor's picks: " + "; ".join(picks) + ".",
    ])  # fmt: skip


def estimate_accuracy_modern(r: Results) -> str:
    j = r.bench("estimate_accuracy_modern.json")
    cases = {(c["model"], c["n_ctx"]): c for c in j["results"]}
    contexts = sorted({n for _, n in cases})
    rows = []
    for model in dict.fromkeys(m for m, _ in cases):
        kind = next(c["kind"] for (m, _), c in cases.items() if m == model)
        row = [model.removesuffix(".gguf"), kind]
        for n in contexts:
            c = cases.get((model, n))
            row.append("—" if c is None else "failed" if "measured_bytes" not in c
                       else f"{pct(c['error'], 2)} ({mib(c['measured_bytes'])})")  # fmt: skip
        rows.append(row)
    med, worst = j["median_abs_error"], j["worst_abs_error"]
    met = "met" if med <= 0.02 and worst <= 0.05 else "**not met**"
    kinds = "; ".join(f"{k}: {pct(v['median_abs_error'], 1, sign=False)} / {pct(v['worst_abs_error'], 1, sign=False)}"
                      for k, v in j["by_kind"].items())  # fmt: skip
    return "\n\n".join([
        f"{j['cases']} cases ({j['failed']} failed) on {machine_words(j.get('machine'))}, peak RSS predicted vs "
        f"measured (positive = predicted more): median |error| {pct(med, 2, sign=False)}, worst "
        f"{pct(worst, 2, sign=False)}; by kind (median / worst): {kinds}.",
        table(["model", "kind", *map(str, contexts)], rows),
        f"Target (issue 16): median ≤ 2 %, worst ≤ 5 % — {met}. Raw results: "
        "`tests/bench/results/estimate_accuracy_modern.json`.",
    ])  # fmt: skip

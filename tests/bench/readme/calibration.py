"""Issue 19's block: the speed model before and after one benchmark of the two small test models
(``speed_calibration.json``)."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import machine_words, table
from tests.bench.readme.results import Results


def _pct(x: float) -> str:
    return f"{100 * x:+.0f} %"


def _cond_rows(c: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in c["models"]:
        g, p = m["gen_tok_s"], m["prompt_tok_s"]
        rows.append([
            m["model"].removesuffix(".gguf"), str(c["threads"]),
            f"{g['median']:.1f} ({g['min']:.1f}–{g['max']:.1f})",
            f"{_pct(m['gen_error_before'])} → {_pct(m['gen_error_after'])}",
            f"{p['median']:.0f} ({p['min']:.0f}–{p['max']:.0f})",
            f"{_pct(m['prompt_error_before'])} → {_pct(m['prompt_error_after'])}",
        ])  # fmt: skip
    return rows


def _summary(c: dict[str, Any]) -> str:
    s = c["summary"]

    def pair(which: str) -> str:
        b, a = s[f"{which}_before"], s[f"{which}_after"]
        return (f"median {100 * b['median_abs_error']:.0f} % → {100 * a['median_abs_error']:.0f} %, "
                f"worst {100 * b['worst_abs_error']:.0f} % → {100 * a['worst_abs_error']:.0f} %")  # fmt: skip

    factors = ", ".join(f"{k} ×{v:.2f}" for k, v in sorted(c["factors"].items()))
    own = ", ".join(
        f"{b['model'].split('.')[0].split('-q')[0]} {_pct(b['gen_error_before'])}" for b in c["calibrated_by"]
    )
    return (f"{c['threads']} thread{'s' if c['threads'] > 1 else ''}: generation {pair('gen')}; prompt "
            f"{pair('prompt')} (factors {factors}; the two small models' own generation error before: {own})")  # fmt: skip


def speed_calibration(r: Results) -> str:
    j = r.bench("speed_calibration.json")
    rows = [row for c in j["conditions"] for row in _cond_rows(c)]
    m = j["machine"]
    bw = f"{m['ram_bandwidth_bytes_s'] / 1e9:.1f} GB/s ({'measured' if m['ram_bandwidth_measured'] else 'assumed'})"
    n_rounds = j["conditions"][0].get("rounds", 1)
    rounds = (f" in {n_rounds} rounds over all the models, the order rotating; tok/s and the errors are medians "
              "over the rounds (min–max: the rounds' own medians), the two small models' medians standing for "
              "their one bench" if n_rounds > 1 else "")  # fmt: skip
    return "\n".join([
        table(["model (synthetic, real shapes)", "threads", "gen tok/s (min–max)", "gen error before → after",
               "prompt tok/s (min–max)", "prompt error before → after"], rows),
        "",
        "Errors of the prediction against the measurement (predicted ÷ measured − 1), before calibration and "
        "after one `bench` of SmolLM2-135M and Gemma-3-270M: " + "; ".join(_summary(c) for c in j["conditions"])
        + f". Before: the speed model with the RAM bandwidth the app measured at the start, {bw}. Measured by the engine's "
        f"benchmark (pp512, tg128 after it, up to 3 repetitions in 30 s){rounds}; {machine_words(m)}; "
        "`tests/bench/results/speed_calibration.json`.",
    ])  # fmt: skip


def h200_bench(r: Results) -> str:
    """`tailorlm bench` on the H200 (``tests/gpu/results/h200-bench.json``)."""
    j = r.gpu("h200-bench.json")
    rows = []
    for name, d in j["runs"].items():
        run = d["runs"][0]
        g, p, pred = run["gen_tok_s"], run["prompt_tok_s"], run["predicted"]
        cal = run["predicted_calibrated"]
        rows.append([
            run["file"].removesuffix(".gguf") + (" (14 GPU layers)" if name == "partial" else ""),
            str(run["n_gpu_layers"]),
            f"{g['median']:.1f} ({g['min']:.1f}–{g['max']:.1f})",
            f"{pred['tok_s']:.1f}" + (f" / {cal['tok_s']:.1f}" if cal["calibrated"] else ""),
            f"{p['median']:,.0f} ({p['min']:,.0f}–{p['max']:,.0f})",
            f"{pred['prompt_tok_s']:,.0f}",
            f"{run['peak_vram_bytes'] / 2**20:,.0f} / {pred['vram_bytes'] / 2**20:,.0f} MiB",
        ])  # fmt: skip
    gpu = j["hw"]["gpus"][0]
    factors = ", ".join(f"{k} ×{v:.2f}" for k, v in sorted(j["advise_after"]["speed_calibration"].items()))
    return "\n".join([
        table(["file (synthetic, real shapes)", "GPU layers", "gen tok/s (min–max)",
               "predicted / calibrated by the runs before it", "prompt tok/s (min–max)", "predicted",
               "peak VRAM measured / predicted"], rows),
        "",
        f"On an {gpu['name']} (driver {gpu['driver_version']}), one after the other in one store, 4,096-token "
        f"context, 3 repetitions each. After the three runs `advise` plans with {factors} (three runs for four "
        "generation terms: one factor per device) and says \"calibrated by benchmark runs here\"; "
        "`tests/gpu/results/h200-bench.json`.",
    ])  # fmt: skip

"""Blocks from the CPU benchmarks' results (``tests/bench/results``)."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import GIB, MIB, machine_words, mib, pct, spread, table, verdict
from tests.bench.readme.results import Results

# Display names of the files the benchmarks use (the test models and the download test's files).
SHORT_NAMES = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M Q4_1",
    "gemma-3-270m-q4_k_m.gguf": "Gemma-3-270M Q4_K_M",
    "big-Q4_1.gguf": "SmolLM2 GGUF padded",
}


def _size(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB else mib(n_bytes)


def estimate_accuracy(r: Results) -> str:
    j = r.bench("estimate_accuracy.json")
    cases = {(c["model"], c["n_ctx"]): c for c in j["results"]}
    contexts = sorted({n for _, n in cases})
    rows = []
    for model in dict.fromkeys(m for m, _ in cases):
        row = [model.removesuffix(".gguf")]
        for n in contexts:
            c = cases.get((model, n))
            if c is None:
                row.append("—")
            elif "measured_bytes" not in c:
                row.append("failed")
            else:
                row.append(f"{pct(c['error'], 2)} ({mib(c['measured_bytes'])})")
        rows.append(row)
    med, worst = j["median_abs_error"], j["worst_abs_error"]
    reached = "reached" if med <= 0.05 and worst <= 0.10 else "**not reached**"
    return "\n\n".join([
        f"{j['cases']} cases ({j['failed']} failed) on {machine_words(j.get('machine'))}: median |error| "
        f"{pct(med, 2, sign=False)}, worst {pct(worst, 2, sign=False)}, mean signed "
        f"{pct(j['mean_signed_error'], 2, sign=False)} (positive = predicted more than measured).",
        table(["model", *map(str, contexts)], rows),
        f"Target (issue 2): median ≤ 5 %, worst ≤ 10 % — {reached}. Raw results: "
        "`tests/bench/results/estimate_accuracy.json`.",
    ])  # fmt: skip


def engine_speed(r: Results) -> str:
    j = r.bench("engine_speed.json")

    def speed(x: dict[str, Any], digits: int) -> str:  # median (min–max) over the rounds
        return f"{x['median']:.{digits}f} ({x['min']:.{digits}f}–{x['max']:.{digits}f})"

    def ratio(x: dict[str, Any]) -> str:
        return f"**{x['median']:.2f}** ({spread(x['values'])}): {verdict(x['values'])}"

    contenders = ("llama_bench", "engine", "engine_sampled")
    speeds, ratios, overheads, busiest, rerun = [], [], [], [], 0
    for res in j["results"]:
        name = SHORT_NAMES.get(res["model"], res["model"])
        cells = [f"{speed(res[c]['spread']['gen_tok_s'], 1)} / {speed(res[c]['spread']['prompt_tok_s'], 0)}"
                 for c in contenders]  # fmt: skip
        speeds.append([name, *cells])
        q = res["ratios"]
        ratios.append([name, ratio(q["engine_gen_vs_llama_bench"]), ratio(q["sampled_gen_vs_llama_bench"]),
                       ratio(q["engine_prompt_vs_llama_bench"]), ratio(q["sampled_gen_vs_greedy"])])  # fmt: skip
        overheads.append(f"{res['engine']['spread']['overhead_ms']['median']:.1f} ms ({name.split()[0]})")
        busiest += [res[c]["spread"]["others_cpu"]["max"] for c in contenders]
        rerun += len(res["discarded_rounds"])
    m = j["machine"]
    before, after = f"{m['load_avg_1min']:.1f}", f"{m['load_avg_1min_after']:.1f}"
    load = before if before == after else f"{before}–{after}"
    return "\n\n".join([
        f"{j['rounds']} rounds on {machine_words(m)}, {j['threads']} threads, load {load}, {j['date']}: "
        "llama-bench, the engine with greedy decoding and the engine with the chat's default sampling, "
        "interleaved (their order rotates every round); tok/s, median (min–max over rounds):",
        table(["model", "llama-bench tg / pp", "engine, greedy: tg / pp", "engine, default sampling: tg / pp"],
              speeds),
        "Each ratio is taken within a round: median (range over rounds), \"on par\" when the range "
        "spans 1.0:",
        table(["model", "greedy ÷ llama-bench tg", "default sampling ÷ llama-bench tg",
               "greedy ÷ llama-bench pp", "default sampling ÷ greedy tg"], ratios),
        f"Per-request overhead taken out of the time to first token for pp (the pipe both ways, "
        f"tokenizing, setting up the request), median: {', '.join(overheads)}. Other processes took at "
        f"most {pct(max(busiest), 0, sign=False)} of the CPUs during a measurement kept; {rerun} "
        f"round{'s were' if rerun != 1 else ' was'} run again because they took more than "
        f"{pct(j['shared_machine']['busy_share'], 0, sign=False)}.",
    ])  # fmt: skip


def stop_latency(r: Results) -> str:
    j = r.bench("stop_latency.json")
    lat, n = j["latency_ms"], j["trials"]
    model = SHORT_NAMES.get(j["model"], j["model"]).split()[0]
    return (
        f"Stop pressed {j['delay_ms']:.0f} ms into reading a {int(j['prompt_tokens']):,}-token prompt ({model}, "
        f"a fresh prompt each trial, {j['n_threads']} threads) ends the request in a median of "
        f"**{lat['median']:.1f} ms** (p10 {lat['p10']:.1f}, p90 {lat['p90']:.1f}, worst {lat['max']:.1f} ms over "
        f"{n} trials; {j['within_bound']} of {n} under the {j['bound_ms']:.0f} ms bound) on "
        f"{machine_words(j.get('machine'))}, from `tests/bench/results/stop_latency.json`. One "
        f"{j['n_batch']}-token batch takes {j['one_512_token_batch_ms'] / 1000:.1f} s here, so the stop lands "
        "inside a batch (llama.cpp's abort callback), not after it."
    )


def _step(x: dict[str, Any]) -> str:
    # the converter writes Q8_0 straight from the checkpoint: say so beside the F16 it also writes
    return "convert (direct)" if x["step"] == "convert" and x["type"] != "F16" else x["step"]


def convert_speed(r: Results) -> str:
    j = r.bench("convert_speed.json")
    rows = [[x["type"], _step(x), f"{x['seconds']:.1f} s", f"{x['bytes'] / 1e6:.1f} MB",
             f"{x['size_error_pct']:+.1f} %"] for x in j["results"]]  # fmt: skip
    return "\n\n".join([
        f"{j['model'].split(' (')[0]} rebuilt as an F32 Hugging Face checkpoint ({j['source_bytes'] / 1e6:.0f} MB), "
        f"{j['threads']} threads, one run per row; the predicted size is what the disk check uses (it errs "
        "on the large side by the vocabulary allowance):",
        table(["type", "step", "time", "size", "predicted"], rows),
    ])  # fmt: skip


_LINKS = {"link_1_gbit_s": "1 Gbit/s", "loopback_unlimited": "loopback"}


def download_speed(r: Results) -> str:
    j = r.bench("download_speed.json")
    rows = []
    for key, link in _LINKS.items():
        for name, x in j[key].items():
            ratio = x["tailorlm_vs_plain"]
            rounds = x["per_round_ratio"]
            rows.append([
                f"{SHORT_NAMES.get(name, name)}, {_size(x['bytes'])}", link, f"{x['plain_mib_s']:.1f} MiB/s",
                f"{x['curl_mib_s']:.1f} MiB/s", f"{x['tailorlm_mib_s']:.1f} MiB/s",
                f"**{ratio:.2f}** ({spread(rounds)})",
            ])  # fmt: skip
    return "\n\n".join([
        "`tailorlm pull` end to end (listing, commit lookup, transfer, SHA-256, cache links, library "
        "registration) against a plain urllib copy (follow the redirect, read, write — no verification) "
        f"and curl, from the same fake-Hub server process, interleaved, {j['rounds']} rounds, medians, and "
        "the range of the single rounds' pull ÷ plain ratio. The server runs once unthrottled on loopback "
        "and once paced like a 1 Gbit/s link:",
        table(["file", "link", "plain", "curl", "TailorLM pull", "pull ÷ plain (rounds)"], rows),
        f"Raw: `tests/bench/results/download_speed.json`. SHA-256 on one core: {j['sha256_mib_s']:,.0f} MiB/s "
        "here (`sha256_mib_s`).",
    ])  # fmt: skip


def _reps(a: int, b: int) -> str:
    return f"{a} reads each" if a == b else f"{a} and {b} reads"


def gguf_header_speed(r: Results) -> str:
    times = r.bench("gguf_fuzz.json")["real_header_parse_ms"]
    g, s = times["gemma-3-270m-q4_k_m.gguf"], times["SmolLM2-135M-Instruct.Q4_1.gguf"]
    return (
        f"Reading a real header takes {g['median']:.0f} ms of CPU time for Gemma-3-270M's 262k-token "
        f"vocabulary and {s['median']:.0f} ms for SmolLM2 (medians of {_reps(g['reps'], s['reps'])} in one "
        f"process; fastest {g['min']:.0f} and {s['min']:.0f} ms)."
    )


def _fuzz_row(label: str, j: dict[str, Any]) -> list[str]:
    ref = j["referee"]
    every = round(j["accepted"] / j["planned"]) if j["planned"] else 0
    planned = "every accepted model planned" if every == 1 else f"every {every}th accepted model planned"
    return [
        f"{label}, seed {j['seed']}, {planned}", f"{j['cases']:,}", f"{j['clean_errors']:,}",
        f"{j['accepted']:,} ({j['planned']:,})", f"{j['uncaught_exceptions']:,}", f"{j['over_5_s']:,}",
        f"{j['max_case_s']:.2f} s", f"{ref.get('both accept', 0):,} / {ref.get('both refuse', 0):,}",
        f"{ref.get('TailorLM refuses, llama.cpp accepts', 0):,}",
        f"**{ref.get('TailorLM accepts, llama.cpp refuses', 0):,}**", f"{j['seconds']:.0f} s",
    ]  # fmt: skip


def gguf_fuzz(r: Results) -> str:
    ci, bench = r.bench("gguf_fuzz_ci.json"), r.bench("gguf_fuzz.json")
    rows = [_fuzz_row("CI: `tests/core/model/test_gguf_fuzz.py`", ci), _fuzz_row("benchmark", bench)]
    head = ["run", "cases", "clean errors", "accepted (planned)", "uncaught", "over 5 s", "slowest case",
            "both accept / both refuse", "refused by TailorLM only", "accepted by TailorLM only", "time"]  # fmt: skip
    parts = [
        table(head, rows),
        f"A case takes {bench['median_case_ms']:.1f} ms at the median ({bench['p99_case_ms']:.0f} ms at p99) "
        f"in the benchmark run, on {machine_words(bench.get('machine'))} shared with other work.",
    ]
    cli = bench.get("cli")
    if cli:
        failed = len(cli["failures"])
        parts[-1] += (
            f" Through the command line, `tailorlm advise FILE --json` on {cli['files']} mutated files: "
            f"{cli['refused_clean']} refused with exit code 2 and one line, {cli['accepted_json']} planned, "
            f"{'no traceback' if not failed else f'{failed} failures'} (median {cli['median_s']:.2f} s, "
            f"slowest {cli['max_s']:.2f} s)."
        )
    return "\n\n".join(parts)


def _spread_of(x: float | dict[str, Any]) -> tuple[float, float, float, int]:
    """(median, min, max, n) of a figure written either as one number or as {median, min, max, values}."""
    if isinstance(x, dict):
        return x["median"], x["min"], x["max"], len(x.get("values", ())) or 1
    return float(x), float(x), float(x), 1


def _with_range(x: float | dict[str, Any], unit: str, digits: int) -> str:
    med, lo, hi, n = _spread_of(x)
    return f"{med:.{digits}f} {unit}" + (
        f" ({lo:.{digits}f}–{hi:.{digits}f} {unit})" if n > 1 else " (one run)"
    )


def gui_responsiveness(r: Results) -> str:
    j = r.bench("gui_responsiveness.json")
    t = j["targets"]
    starts = _spread_of(j["startup_s"])[3]
    rss_med, rss_lo, rss_hi, procs = _spread_of(j["idle_rss_mib"])
    rows = [
        [f"window shown after start ({starts} starts)", _with_range(j["startup_s"], "s", 2), f"≤ {t['startup_s']:g} s"],
        [f"idle RSS (hardware detected, default panel shown; {procs} processes)",
         f"{rss_med:.1f} MiB = {rss_med * MIB / 1e6:.1f} MB ({rss_lo:.1f}–{rss_hi:.1f} MiB)", f"≤ {t['idle_rss_mb']:g} MB"],
    ]  # fmt: skip
    what = {"load_and_stream": "longest stall while SmolLM2 loads and streams a 200-token answer",
            "download": "longest stall while a 241 MiB download runs"}  # fmt: skip
    for key, label in what.items():
        s = j[key]
        p99, lo, hi, n = _spread_of(s["p99_stall_ms"])
        rows.append([f"{label} ({n} rounds)", f"{_with_range(s['max_stall_ms'], 'ms', 1)}; p99 {p99:.1f} ms "
                     f"({lo:.1f}–{hi:.1f})", f"≤ {t['max_stall_ms']:g} ms"])  # fmt: skip
    m = j["machine"]
    before, after = f"{m['load_avg_1min']:.1f}", f"{m['load_avg_1min_after']:.1f}"
    load = before if before == after else f"{before}–{after}"
    missed = [k for k, ok in j["holds"].items() if not ok]
    return "\n\n".join([
        f"Median (min–max) over {j['rounds']} rounds on {machine_words(m)}, load {load}, {j['date']}"
        + (f"; **missed: {', '.join(missed)}**" if missed else "") + ":",
        table(["", "measured", "target"], rows),
    ])  # fmt: skip


def sampler_speed(r: Results) -> str:
    j = r.bench("sampler_speed.json")

    def us(x: dict[str, Any]) -> str:
        return f"{x['median']:.0f} ({x['min']:.0f}–{x['max']:.0f})"

    rows = [[f"{x['vocabulary']} ({x['n_vocab']:,})", us(x["pick_us"]["argmax"]), us(x["pick_us"]["C"]),
             us(x["pick_us"]["numpy"]), f"**{x['ratios']['numpy_over_c']['median']:.1f}×**"]
            for x in j["results"]]  # fmt: skip
    return "\n\n".join([
        f"{j['rounds']} interleaved rounds on {machine_words(j['machine'])}, {j['date']}; µs per token, median "
        f"(min–max over rounds) of {j['picks_per_round']} picks a round, each from logits the caches have not "
        f"just seen; {j['settings']}; both paths picked the same tokens:",
        table(["vocabulary", "argmax (greedy's floor)", "C helper", "numpy fallback", "numpy ÷ C"], rows),
    ])  # fmt: skip


def abort_callback(r: Results) -> str:
    j = r.bench("abort_callback.json")

    def ratio(x: dict[str, Any]) -> str:
        return f"**{x['median']:.3f}** ({x['min']:.3f}–{x['max']:.3f}): {verdict(x['values'])}"

    rows = [[SHORT_NAMES.get(x["model"], x["model"]), f"{x['tok_s']['Python']['median']:.1f}",
             f"{x['tok_s']['C']['median']:.1f}", f"{x['tok_s']['none']['median']:.1f}",
             ratio(x["over_python"]["C"]), ratio(x["over_python"]["none"])] for x in j["results"]]  # fmt: skip
    return "\n\n".join([
        f"{j['rounds']} interleaved rounds of {j['tokens_per_round']} tokens on {machine_words(j['machine'])}, "
        f"{j['threads']} threads, {j['date']}; tok/s, medians, and each callback ÷ the Python one within "
        "a round (median, range, \"on par\" when the range spans 1.0):",
        table(["model", "Python callback", "C callback", "no callback", "C ÷ Python", "none ÷ Python"], rows),
    ])  # fmt: skip

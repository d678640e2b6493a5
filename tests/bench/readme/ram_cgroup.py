"""The block of the memory-cgroup proof of ``ram_bytes`` (``tests/bench/results/ram_cgroup.json``, issue 15)."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import MIB, machine_words, mib, spread, table
from tests.bench.readme.local import SHORT_NAMES
from tests.bench.readme.results import Results

KIB = 1024


def _name(model: str) -> str:
    if model in SHORT_NAMES:
        return SHORT_NAMES[model]
    return (
        model.removesuffix(".gguf").replace("llama-3.2-1b-instruct-", "Llama-3.2-1B shapes ") + " (synthetic)"
    )


def _speed(v: dict[str, Any]) -> str:
    """ "0.98 / 1.01 (0.95–1.04)": median prompt / generation ratios to the free run, generation's rounds."""
    return f"{v['prompt_tok_s_ratio']:.2f} / {v['gen_tok_s_ratio']:.2f} ({spread(v['gen_tok_s_ratios'])})"


def _per_token(v: dict[str, Any]) -> str:
    reread = v["reread_per_token_bytes"]
    return "—" if reread is None else mib(reread)


def _mib_range(values: list[float]) -> str:
    lo, hi = mib(min(values)).removesuffix(" MiB"), mib(max(values))
    return hi if lo == hi.removesuffix(" MiB") else f"{lo}–{hi}"


def _outcome(v: dict[str, Any]) -> str:
    stopped = sum(o == "out_of_time" for o in v["outcomes"])
    killed = sum(o == "killed" for o in v["outcomes"])
    parts = [f"{killed} of {v['rounds']} killed"] if killed else []
    parts += [f"{stopped} of {v['rounds']} stopped at twice the time"] if stopped else []
    return f"{v['verdict']}" + (f" ({', '.join(parts)})" if parts else "")


def _why_not(v: dict[str, Any]) -> str:
    """Why +3 % fell short: the weights re-read (thrashing), or nothing the limit did at all."""
    if max(v["reread_bytes"], default=0) < MIB:
        key = "prompt_tok_s" if v["prompt_tok_s_ratio"] < v["gen_tok_s_ratio"] else "gen_tok_s"
        what = "prompt" if key == "prompt_tok_s" else "generation"
        return f"nothing re-read; its {what} ratios span {spread(v[key + '_ratios'])}: the shared machine's noise"
    per_token = v["reread_per_token_bytes"]
    return f"{mib(per_token)} re-read per token" if per_token is not None else "pages re-read"


def _verdict(holding: list[str], failing: list[str], what: str) -> str:
    if not failing:
        return f"{what}: **holds** in all {len(holding)} cases."
    return f"{what}: **holds in {len(holding)} of {len(holding) + len(failing)} cases**; not for {', '.join(failing)}."


def ram_cgroup(r: Results) -> str:
    j = r.bench("ram_cgroup.json")
    m, n_gen = j["machine"], j["gen_tokens"]
    rows: list[list[str]] = []
    holds: dict[str, tuple[list[str], list[str]]] = {"plus_3": ([], []), "minus_10": ([], [])}
    baselines, rss = [], []
    for c in j["cases"]:
        free, plus, minus = (c["variants"][k] for k in ("unlimited", "plus_3", "minus_10"))
        label = f"{_name(c['model'])} at {c['n_ctx']:,}"
        holds["plus_3"][0 if plus["holds"] else 1].append(
            label if plus["holds"] else f"{label} ({_why_not(plus)})"
        )
        holds["minus_10"][0 if minus["holds"] else 1].append(label)
        baselines.append(free["baseline_bytes"])
        rss.append(free["baseline_rss_bytes"])
        rows.append([
            _name(c["model"]), f"{c['n_ctx']:,}", f"{mib(c['ram_bytes'])} ({mib(c['reclaimable_bytes'])})",
            mib(free["peak_charge_bytes"]), f"{free['prompt_tok_s']:.0f} / {free['gen_tok_s']:.1f}",
            mib(plus["limit_bytes"]), _speed(plus), _per_token(plus),
            mib(minus["limit_bytes"]), _speed(minus), _per_token(minus), _outcome(minus),
        ])  # fmt: skip
    killed = sorted(
        {e for c in j["cases"] for e in c["variants"]["minus_10"]["errors"] if "out of memory" in e}
    )
    head = ["model", "context", "`ram_bytes` (reclaimable)", "free run: peak charge", "free: pp / tg tok/s",
            "+3 % limit", "+3 %: pp / tg ÷ free (tg rounds)", "+3 %: re-read per token", "−10 % limit",
            "−10 %: pp / tg ÷ free (tg rounds)", "−10 %: re-read per token", "−10 %"]  # fmt: skip
    ra = m.get("read_ahead_kb")
    parts = [
        f"{j['rounds']} rounds on {machine_words(m)}, {m['ram_bytes'] / KIB**3:.0f} GiB RAM, Linux {m['kernel']} "
        f"({m['cgroup']}), disk read-ahead {f'{ra:,} KiB' if ra is not None else 'unknown'}, {j['n_threads']} "
        f"threads, llama-cpp-python {j['llama_cpp_python']}; each run a fresh cgroup and the model's pages evicted "
        f"first, a {j['prompt_tokens']}-token prompt and {n_gen} tokens; the three runs interleaved, medians. "
        f"Limit = fit × 1.03 or × 0.90, fit = `ram_bytes` − {mib(j['process_base_bytes_predicted'])} (the "
        f"predicted process baseline) + the process's measured baseline: {_mib_range(baselines)} charged to the cgroup once Python, the app and llama.cpp's libraries were loaded "
        f'(its resident set then: {_mib_range(rss)}, shared library pages included). "Re-read": '
        "model file pages the kernel evicted and read again, per token written after the first.",
        table(head, rows),
        _verdict(*holds["plus_3"], "+3 % keeps ≥ 0.9× the speed")
        + " "
        + _verdict(*holds["minus_10"], "−10 % is killed or falls below half the speed"),
    ]
    if killed:
        parts.append("A killed run says: " + "; ".join(f"“{e}”" for e in killed))
    parts.append("Raw: `tests/bench/results/ram_cgroup.json`.")
    return "\n\n".join(parts)

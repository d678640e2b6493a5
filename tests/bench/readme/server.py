"""Issue 18's block: the HTTP layer's cost beside the engine, and many clients at once
(``server_speed.json``)."""

from __future__ import annotations

from tests.bench.readme.fmt import machine_words, spread, table, verdict
from tests.bench.readme.results import Results


def _mib(rss: dict[str, list[float]], i: int) -> str:
    return " → ".join(f"{rss[k][i]:.0f}" for k in ("start", "warm", "end") if k in rss) + " MiB"


def server_speed(r: Results) -> str:
    j = r.bench("server_speed.json")
    one, many = j["one_client"], j["many_clients"]
    ratio, ttft = one["tok_s_ratio"], one["ttft_overhead_ms"]
    rows = [
        ["generation, server ÷ engine", f"{ratio['median']:.3f}×", spread(ratio["values"], 3)],
        [
            "time to first token, server − engine",
            f"{ttft['median']:+.1f} ms",
            spread(ttft["values"], 1) + " ms",
        ],
        [
            "engine alone",
            f"{one['engine_tok_s']['median']:.1f} tok/s",
            spread(one["engine_tok_s"]["values"], 1),
        ],
        [
            "through the server",
            f"{one['server_tok_s']['median']:.1f} tok/s",
            spread(one["server_tok_s"]["values"], 1),
        ],
    ]
    n = many["clients"] * many["requests_per_client"]
    rss = many["rss_mib_app_model"]
    many_words = (
        f"{many['clients']} clients × {many['requests_per_client']} requests (the `openai` client, 8 tokens each, "
        f"all at once): {many['answered']:,} of {n:,} answered, {many['errors']} errors, {many['lost']} lost, "
        f"{many['requests_per_s']:.1f} requests/s; every client finished within {many['slowest_over_fastest']:.2f}× "
        f"of the fastest (Jain's fairness index {many['jain_fairness']:.3f}); RSS at the start, once warm "
        f"(a tenth of the requests answered) and at the end: the app (the server) {_mib(rss, 0)}, the model "
        f"process {_mib(rss, 1)} (the clients ran in a process of their own)."
    )
    return "\n".join([
        table(["one client, same request", "median", "rounds"], rows),
        "",
        f"{len(one['rounds'])} interleaved rounds of up to {j['tokens']} greedy tokens of {j['model']} through the "
        "engine client and through `POST /v1/chat/completions` (streamed, read with `http.client`), on one model "
        f"process: generation speed after the first token, and the time to it, both measured in the app's process; "
        f"{verdict(one['tok_s_ratio']['values'])} by the rounds' spread. {many_words} "
        f"{machine_words(j['machine'])}, {j['threads']} threads; `tests/bench/results/server_speed.json`.",
    ])  # fmt: skip

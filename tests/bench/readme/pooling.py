"""The block of the pooling benchmark (``tests/bench/results/pooling.json``, issue 20)."""

from __future__ import annotations

from typing import Any

from app.core.advice.rpc_link import LAN_BYTES_S
from tests.bench.readme.fmt import machine_words, pct, spread, table
from tests.bench.readme.local import SHORT_NAMES
from tests.bench.readme.results import Results


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _words(j: dict[str, Any]) -> str:
    parts = []
    for m in j["models"]:
        d, t = m["default_gen_ratios"], m["gen_ratios"]
        how = "faster" if min(d) > max(t) else ("slower" if max(d) < min(t) else "on par")
        parts.append(f"{how} for {SHORT_NAMES.get(m['model'], m['model'])} ({m['default_gen_ratio']:.2f} vs "
                     f"{m['gen_ratio']:.2f} of alone)")  # fmt: skip
    return ", ".join(parts)


def pooling(r: Results) -> str:
    j = r.bench("pooling.json")
    rows = []
    for m in j["models"]:
        mem = ", ".join(f"{pct(x['error'])}" for x in m["memory"])
        rows.append([
            SHORT_NAMES.get(m["model"], m["model"]),
            f"{m['pooled_layers_here']} of {m['n_layer'] + 1} here, the rest over 2 workers",
            f"{m['alone_gen_tok_s']:.1f}", f"{m['pooled_gen_tok_s']:.1f}",
            f"{m['gen_ratio']:.2f} ({spread(m['gen_ratios'])})",
            f"{_kib(m['bytes_per_token_measured'])} / {_kib(m['bytes_per_token_predicted'])}",
            f"{m['default_gen_ratio']:.2f} ({spread(m['default_gen_ratios'])})",
            f"{_kib(m['default_bytes_per_token_measured'])} / {_kib(m['default_bytes_per_token_predicted'])}",
            mem,
        ])  # fmt: skip
    head = ["model (file's quantization)", "placement", "alone tok/s", "pooled tok/s", "pooled / alone (rounds)",
            "network per token, measured / predicted", "llama.cpp's placement: pooled / alone",
            "its network per token", "worker memory: predicted vs llama.cpp"]  # fmt: skip
    return "\n\n".join([
        f"Measured on {machine_words(j['machine'])}, {j['rounds']} rounds of {j['tokens']} generated tokens at "
        f"{j['n_ctx']:,} tokens of context, one thread per process, medians (pooled / alone: each round's "
        "ratio, side by side). The workers run on this machine and the bytes are counted by a relay "
        "between the model process and each worker, so the speeds show the protocol's own cost, not a "
        "network's: on a LAN every token also waits one round trip per worker it passes (0.2–0.5 ms each).",
        table(head, rows),
        "TailorLM's placement keeps the output matmul's weights here (a tensor override), so a token "
        "brings back its hidden state; llama.cpp's own puts the output layer on the last worker, and "
        "every token's logits (4 bytes per vocabulary entry) cross the network. On loopback that costs little "
        "and llama.cpp's placement measured " + _words(j) + "; over gigabit Ethernet the logits "
        "alone would add " + ", ".join(
            f"{(m['default_bytes_per_token_measured'] - m['bytes_per_token_measured']) / LAN_BYTES_S * 1000:.1f} ms "
            f"per token for {SHORT_NAMES.get(m['model'], m['model'])}" for m in j["models"]) + ", which is "
        "what TailorLM's choice avoids.",
        "Raw: `tests/bench/results/pooling.json`.",
    ])  # fmt: skip


def h200_rpc(r: Results) -> str:
    j = r.gpu("h200-rpc.json")
    rows = [[f"{c['n_gpu_layers']} of {j['n_layer'] + 1}", f"{c['gen_tok_s']:.1f} ({spread(c['gen_tok_s_rounds'], 1)})",
             f"{c['gen_tok_s'] / j['alone_gen_tok_s']:.1f}×",
             f"{sum(c['measured'].values()) / 2**20:,.1f} MiB", f"{c['predicted']['total'] / 2**20:,.1f} MiB", pct(c["error"], 2)]
            for c in j["cases"]]  # fmt: skip
    head = [
        "layers on the worker's GPU",
        "tok/s",
        "vs this CPU alone",
        "worker buffers (llama.cpp)",
        "predicted",
        "error",
    ]
    return "\n\n".join([
        f"`tailorlm worker` lending an H200 (CUDA0, {j['worker']['total_bytes'] / 2**30:.0f} GiB reported) to a model "
        f"process that sees no GPU (`CUDA_VISIBLE_DEVICES=\"\"`), on loopback; synthetic {j['model']} "
        f"(Llama-3.2-1B shapes, F16) at {j['n_ctx']:,} tokens; this machine's CPU alone writes "
        f"{j['alone_gen_tok_s']:.1f} tok/s ({spread(j['alone_gen_tok_s_rounds'], 1)}). Speeds: the median of "
        f"{len(j['alone_gen_tok_s_rounds'])} loads, with the range.",
        table(head, rows),
        "Raw: `tests/gpu/results/h200-rpc.json`.",
    ])  # fmt: skip

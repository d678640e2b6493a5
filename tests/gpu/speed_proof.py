"""Speed on a real NVIDIA GPU (issue 15): the speed model's GPU records, and sampled chat vs greedy
vs llama-bench, all layers on the GPU.

For each model × quantization (synthetic models with the real shapes, written and quantized on
the machine by ``tests/gpu/speed_device.sh``):

* llama-bench, the ceiling: pp512, and tg256 at a depth of 512 (5 repetitions each);
* the engine, as chat runs it (``EngineClient``, a child process): a 512-token prompt, then 256
  tokens with greedy decoding and with the chat's default sampling (``Sampling()``: temperature
  0.7, top-k 40, top-p 0.95, min-p 0.05, repeat penalty 1.1), ``ignore_eos`` so every answer has
  256 tokens; rounds interleaved, the order flipped each round. Timed in the parent: generation
  is (tokens − 1) ÷ (time of the last event − time of the first token's event), prompt is tokens
  ÷ time to the first token's event;
* ``raw``: the per-token host cost of each way to pick a token, in one process with no pipe:
  argmax, the fast sampler, llama.cpp's whole chain on the CPU, greedy in the graph (what the
  engine runs when the output layer is on the GPU) and llama.cpp's backend sampling of the whole
  chain (``llama_set_sampler``), over the same decode loop.

    python tests/gpu/speed_proof.py run --models DIR --out FILE --bench LLAMA_BENCH [--only ID:QUANT ...]
    python tests/gpu/speed_proof.py raw MODEL_FILE          # prints JSON (run as a child by ``run``)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests.gpu.gpu_proof import cli_json, header_summary, log, prompt_of  # noqa: E402

CASES = (
    ("gemma-3-1b-it", "Q4_K_M"),  # the 262k-vocabulary shape
    ("qwen2.5-1.5b-instruct", "Q4_K_M"),  # the 152k-vocabulary shape
    ("gemma-3-1b-it", "Q8_0"),
    ("qwen2.5-1.5b-instruct", "Q8_0"),
    ("llama-3.2-3b-instruct", "Q4_K_M"),
    ("llama-3.2-3b-instruct", "Q6_K"),
    ("llama-3.2-3b-instruct", "Q8_0"),
    ("llama-3.1-8b-instruct", "Q4_K_M"),
    ("llama-3.1-8b-instruct", "Q8_0"),
)
N_PROMPT, N_GEN, ROUNDS, N_CTX = 512, 256, 5, 4096
ENGINE_SAMPLER = (
    "app/engine/sampler.py: greedy runs in the model's graph (llama.cpp's greedy as a backend sampler) "
    "when the output layer is on the GPU; default sampling: the repeat penalty and the exact top-k cut "
    "on the host in one call, then llama.cpp's chain (top_p, min_p, temp, dist) on the candidates; the cut: "
)


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "runs": [round(v, 4) for v in values]}  # fmt: skip


def answer_rates(client: EngineClient, prompt: str, s: P.Sampling) -> dict[str, float]:
    """One answer timed in the parent: generation (tokens − 1) ÷ (last event − first token's event),
    prompt tokens ÷ time to the first token's event."""
    t_send = time.perf_counter()
    t_first = t_last = None
    done = None
    for ev in client.generate(prompt, s, flush_ms=20):
        now = time.perf_counter()
        if isinstance(ev, P.Done):
            done, t_last = ev, now
        elif t_first is None:
            t_first = now
    assert done is not None and t_first is not None and t_last is not None
    assert done.n_gen_tokens == s.max_tokens, done
    return {"gen_tok_s": (done.n_gen_tokens - 1) / (t_last - t_first),
            "prompt_tok_s": done.n_prompt_evaluated / (t_first - t_send),
            "child_gen_tok_s": done.gen_tok_s or 0.0}  # fmt: skip


def engine_rounds(path: Path, ngl: int, threads: int) -> dict[str, Any]:
    greedy = P.Sampling(temperature=0, repeat_penalty=1.0, max_tokens=N_GEN, ignore_eos=True)
    rows: dict[str, list[dict[str, float]]] = {"greedy": [], "sampled": []}
    with EngineClient() as client:
        client.load(
            P.Load(model_path=str(path), n_ctx=N_CTX, n_gpu_layers=ngl, n_threads=threads, flash_attn="on")
        )
        text = prompt_of(client, N_PROMPT - 8)
        answer_rates(client, f"warm-up {text}", greedy)
        for r in range(ROUNDS):
            sampled = P.Sampling(seed=r, max_tokens=N_GEN, ignore_eos=True)
            order = [("greedy", greedy), ("sampled", sampled)]
            for name, s in order if r % 2 == 0 else order[::-1]:
                rows[name].append(answer_rates(client, f"{r} {name} {text}", s))
    g = [x["gen_tok_s"] for x in rows["greedy"]]
    sm = [x["gen_tok_s"] for x in rows["sampled"]]
    return {
        "gen_tok_s": statistics.median(g),
        "gen_tok_s_runs": [round(x, 1) for x in g],
        "sampled_gen_tok_s": statistics.median(sm),
        "sampled_gen_tok_s_runs": [round(x, 1) for x in sm],
        "sampled_over_greedy": spread([a / b for a, b in zip(sm, g, strict=True)]),
        "prompt_tok_s": statistics.median(x["prompt_tok_s"] for x in rows["greedy"] + rows["sampled"]),
        "child_gen_tok_s": statistics.median(x["child_gen_tok_s"] for x in rows["greedy"]),
        "n_gen": N_GEN,
        "depth": N_PROMPT,
    }


def llama_bench(bench: str, path: Path, threads: int) -> dict[str, Any]:
    def one(*args: str) -> tuple[dict[str, Any], str]:
        cmd = [
            bench,
            "-m",
            str(path),
            "-ngl",
            "99",
            "-fa",
            "1",
            "-t",
            str(threads),
            "-r",
            "5",
            "-o",
            "json",
            *args,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
        return json.loads(out.stdout)[0], " ".join(cmd[1:])

    pp, pp_cmd = one("-p", str(N_PROMPT), "-n", "0")
    tg, tg_cmd = one("-p", "0", "-n", str(N_GEN), "-d", str(N_PROMPT))
    return {"gen_tok_s": float(tg["avg_ts"]), "gen_tok_s_runs": [round(x, 1) for x in tg.get("samples_ts", [])],
            "prompt_tok_s": float(pp["avg_ts"]), "prompt_tok_s_runs": [round(x, 1) for x in pp.get("samples_ts", [])],
            "commands": [pp_cmd, tg_cmd]}  # fmt: skip


def raw_costs(path: Path, ngl: int, n_gen: int = N_GEN, n_words: int = N_PROMPT) -> dict[str, Any]:
    """Per-token host cost of each way to pick a token (runs in its own process)."""
    import llama_cpp as L

    from app.engine.llama_session import LlamaSession
    from app.engine.sampler import GreedySampler, TopKSampler, full_chain, make_sampler
    from app.engine.token_stream import GenStats

    session = LlamaSession()
    session.load(P.Load(model_path=str(path), n_ctx=N_CTX, n_gpu_layers=ngl, flash_attn="on"), lambda f: None)
    prompt = " ".join(str(i) for i in range(n_words))
    n_vocab = int(L.llama_vocab_n_tokens(session.vocab))
    s = P.Sampling(seed=1)

    def loop(pick: Any, n: int = n_gen) -> float:
        session.kv_tokens = []
        assert session._evaluate_prompt(session.tokenize(prompt), GenStats())
        t0 = time.perf_counter()
        for _ in range(n):
            tok = pick()
            if session._decode([tok]) != 0:
                raise RuntimeError("decode failed")
            session.kv_tokens.append(tok)
        return n / (time.perf_counter() - t0)

    out: dict[str, Any] = {"n_vocab": n_vocab}
    greedy = make_sampler(L, session.vocab, P.Sampling(temperature=0, repeat_penalty=1.0))
    fast = make_sampler(L, session.vocab, s)
    out["fast sampler path"] = sampler_path()
    in_numpy = TopKSampler(L, n_vocab, s, use_native=False)  # the fallback without a C compiler
    chain = full_chain(L, n_vocab, s)
    modes = {"argmax": lambda: greedy.sample(session.ctx), "fast sampler": lambda: fast.sample(session.ctx),
             "fast sampler (numpy)": lambda: in_numpy.sample(session.ctx),
             "llama.cpp chain": lambda: int(L.llama_sampler_sample(chain, session.ctx, -1))}  # fmt: skip
    runs: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(3):
        for m, pick in modes.items():
            runs[m].append(loop(pick))
    out.update({m: spread(v) for m, v in runs.items()})
    in_graph = []  # greedy as the engine runs it with the output layer on the GPU: in the graph
    for _ in range(3):
        g = GreedySampler(L, n_vocab, ctx=session.ctx)
        try:
            in_graph.append(loop(lambda: g.sample(session.ctx)))  # noqa: B023 (used at once)
        finally:
            g.close()
    out["greedy in the graph"] = spread(in_graph)
    out["phases_us"] = {"argmax": phases(L, session, greedy, prompt, n_gen),
                        "fast sampler": phases(L, session, fast, prompt, n_gen),
                        "fast sampler (numpy)": phases(L, session, in_numpy, prompt, n_gen)}  # fmt: skip
    try:  # llama.cpp's backend sampling: the same chain, run inside the GPU graph
        backend = full_chain(L, n_vocab, s)
        if not L.llama_set_sampler(session.ctx, 0, backend):
            raise RuntimeError("llama_set_sampler refused the chain")
        out["backend sampling"] = spread(
            [loop(lambda: int(L.llama_sampler_sample(backend, session.ctx, -1))) for _ in range(3)]
        )
    except Exception as exc:  # the experimental API may not run on this build: say so
        out["backend sampling"] = {"error": repr(exc)}
    out["backend distribution"] = backend_distribution(L, session)
    return out


def sampler_path() -> str:
    """Which cut the engine's sampler runs on this machine: the C helper (and where), or numpy and why."""
    from app.engine import native

    lib = native.library()
    return f"C helper {lib.path.name}" if lib else f"numpy ({native.why_not()})"


def phases(L: Any, session: Any, sampler: Any, prompt: str, n: int) -> dict[str, float]:
    """Where a token's time goes, in microseconds (medians over ``n`` tokens): waiting for the GPU
    (``llama_synchronize``), picking the token, and ``llama_decode`` returning (building the graph
    and queueing it)."""
    from app.engine.token_stream import GenStats

    session.kv_tokens = []
    assert session._evaluate_prompt(session.tokenize(prompt), GenStats())
    tok_arr = (L.llama_token * 1)()
    batch = L.llama_batch_get_one(tok_arr, 1)
    wait, pick, launch = [], [], []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        L.llama_synchronize(session.ctx)
        t1 = time.perf_counter_ns()
        tok = sampler.sample(session.ctx)
        t2 = time.perf_counter_ns()
        tok_arr[0] = tok
        if L.llama_decode(session.ctx, batch) != 0:
            raise RuntimeError("decode failed")
        t3 = time.perf_counter_ns()
        wait.append(t1 - t0), pick.append(t2 - t1), launch.append(t3 - t2)
    return {
        k: round(statistics.median(v) / 1000, 1)
        for k, v in (("wait", wait), ("pick", pick), ("decode call", launch))
    }


def backend_distribution(L: Any, session: Any, n: int = 2000) -> dict[str, Any]:
    """The CUDA backend's draws against llama.cpp's host chain on the same logits (chi-squared;
    tests/engine/test_sampler.py does the same on the CPU backend)."""
    from collections import Counter

    import numpy as np

    from app.engine.token_stream import GenStats
    from tests.sampling_check import backend_draws, chain_probabilities, chi2, chi2_critical

    tokens = session.tokenize(" ".join(str(i) for i in range(64)))
    session.kv_tokens = []
    assert session._evaluate_prompt(tokens, GenStats())
    n_vocab = int(L.llama_vocab_n_tokens(session.vocab))
    logits = np.ctypeslib.as_array(L.llama_get_logits_ith(session.ctx, -1), shape=(n_vocab,)).copy()
    s = P.Sampling(temperature=1.5, top_k=40, top_p=0.98, min_p=0.0, repeat_penalty=1.0, seed=3)
    probs = chain_probabilities(L, s, [], logits)
    draws = backend_draws(L, session, tokens, s, n)
    stat, df = chi2(Counter(draws), probs, n)
    return {"draws": n, "support": len(probs), "outside_support": len(set(draws) - set(probs)),
            "chi2": round(stat, 2), "df": df, "critical_1e-4": round(chi2_critical(df), 2) if df > 0 else None}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    j: dict[str, Any] = (
        json.loads(out.read_text()) if out.exists() else {"benchmark": "gpu_speed", "speed": []}
    )
    j.setdefault("hw", cli_json("hw"))
    # built here, once, before the model processes look for it in the same cache
    j["engine_sampler"] = ENGINE_SAMPLER + sampler_path()
    threads = os.cpu_count() or 8
    j["threads"] = threads
    j.setdefault("models", {})
    done = {(x["model_id"], x["quant"]) for x in j["speed"]}
    cases = [c for c in CASES if not args.only or f"{c[0]}:{c[1]}" in args.only]
    for mid, quant in cases:
        if (mid, quant) in done:
            continue
        path = Path(args.models) / f"{mid}-{quant}.gguf"
        while not path.exists():
            if not Path(f"{path}.planned").exists():
                log(f"skip {path.name}: not there")
                break
            time.sleep(2)
        if not path.exists():
            continue
        log(f"{path.name}: llama-bench")
        summary = header_summary(path)
        arch = summary["metadata"]["general.architecture"]
        row: dict[str, Any] = {"model": path.name, "model_id": mid, "quant": quant, "n_ctx": N_CTX,
                               "n_gpu_layers": int(summary["metadata"][f"{arch}.block_count"]) + 1,
                               "threads": threads}  # fmt: skip
        try:
            row["llama_bench"] = llama_bench(args.bench, path, threads)
            log(f"{path.name}: engine")
            row["engine"] = engine_rounds(path, row["n_gpu_layers"], threads)
            row["greedy_over_llama_bench"] = row["engine"]["gen_tok_s"] / row["llama_bench"]["gen_tok_s"]
            if (mid, quant) in {CASES[0], CASES[1]}:
                log(f"{path.name}: raw")
                raw = subprocess.run([sys.executable, __file__, "raw", str(path), "--ngl", str(row["n_gpu_layers"])], capture_output=True, text=True,
                                     timeout=600, check=False)  # fmt: skip
                row["raw"] = json.loads(raw.stdout) if raw.returncode == 0 else {"error": raw.stderr[-1500:]}
        except Exception as exc:  # keep what the other cases measure
            row["error"] = repr(exc)
        j["models"][path.name] = summary
        j["speed"].append(row)
        out.write_text(json.dumps(j, indent=1))
        log(f"{path.name}: {json.dumps({k: row.get(k) for k in ('greedy_over_llama_bench', 'error')})}")
    j["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(j, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--models", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--bench", required=True)
    r.add_argument("--only", nargs="*", default=[])
    w = sub.add_parser("raw")
    w.add_argument("model")
    w.add_argument("--ngl", type=int, required=True)
    w.add_argument("--n-gen", type=int, default=N_GEN)
    w.add_argument("--n-words", type=int, default=N_PROMPT)
    args = ap.parse_args()
    if args.cmd == "raw":
        print(json.dumps(raw_costs(Path(args.model), args.ngl, args.n_gen, args.n_words)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: generation and prompt speed through TailorLM's engine vs bare llama-cpp-python vs
llama-bench (the ceiling), side by side in one run, on the two real test models (CPU).

llama-bench is built from the llama.cpp sources in the llama-cpp-python sdist of the installed
version (so it is the same llama.cpp), once, into ~/.cache/tailorlm-bench. Prints JSON with
tok/s for each and the ratios engine/llama-bench and engine/llama-cpp-python.

    python tests/bench/engine_speed.py [--threads 2] [--gen 128] [--prompt 512] [--reps 3]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests import models  # noqa: E402

CACHE = Path.home() / ".cache" / "tailorlm-bench"


def llama_bench() -> Path:
    version = importlib.metadata.version("llama-cpp-python")
    build = CACHE / f"llama.cpp-{version}" / "build"
    exe = build / "bin" / "llama-bench"
    if exe.exists():
        return exe
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={version}", "-d", tmp], check=True)  # fmt: skip
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(Path(tmp).glob("llama_cpp_python-*")) / "vendor" / "llama.cpp"
        dest = CACHE / f"llama.cpp-{version}"
        subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    subprocess.run(["cmake", "-S", str(build.parent), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
                    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF"], check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        ["cmake", "--build", str(build), "-j", "2", "--target", "llama-bench"],
        check=True,
        capture_output=True,
    )
    return exe


def bench_llama_bench(
    exe: Path, model: Path, threads: int, n_prompt: int, n_gen: int, reps: int
) -> dict[str, float]:
    """pp at an empty cache; tg at a depth of ``n_prompt`` tokens (-d), as in a chat after the prompt."""

    def run(*extra: str) -> dict[str, object]:
        out = subprocess.run([str(exe), "-m", str(model), "-t", str(threads), "-fa", "1", "-r", str(reps),
                              "-o", "json", *extra], capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(out.stdout)[0]  # type: ignore[no-any-return]

    pp = run("-p", str(n_prompt), "-n", "0")
    tg = run("-p", "0", "-n", str(n_gen), "-d", str(n_prompt))
    tg0 = run("-p", "0", "-n", str(n_gen))
    return {"prompt_tok_s": float(pp["avg_ts"]), "gen_tok_s": float(tg["avg_ts"]),  # type: ignore[arg-type]
            "gen_tok_s_empty_cache": float(tg0["avg_ts"])}  # type: ignore[arg-type]  # fmt: skip


def _prompt_text(n_tokens: int) -> str:
    return " ".join(["the quick brown fox jumps over the lazy dog"] * (n_tokens // 9 + 1))


def bench_llama_cpp_python(
    model: Path, threads: int, n_prompt: int, n_gen: int, reps: int
) -> dict[str, float]:
    """The high-level API most apps use: create_completion(stream=True), measured as tokens arrive."""
    code = f"""
import json, time, llama_cpp
llm = llama_cpp.Llama({str(model)!r}, n_ctx={n_prompt + n_gen + 64}, n_threads={threads}, n_threads_batch={threads},
                      flash_attn=True, verbose=False)
toks = llm.tokenize({_prompt_text(n_prompt)!r}.encode())[:{n_prompt}]
gen, pp = [], []
for _ in range({reps}):
    llm.reset()
    t0 = time.perf_counter(); n = 0; t_first = None
    for chunk in llm.create_completion(toks, max_tokens={n_gen}, stream=True, temperature=0.0, logit_bias={{llm.token_eos(): -1e9}}):
        n += 1
        if t_first is None: t_first = time.perf_counter()
    t1 = time.perf_counter()
    pp.append(len(toks) / (t_first - t0)); gen.append((n - 1) / (t1 - t_first))
print(json.dumps({{"prompt_tok_s": sorted(pp)[len(pp)//2], "gen_tok_s": sorted(gen)[len(gen)//2]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_engine(model: Path, threads: int, n_prompt: int, n_gen: int, reps: int) -> dict[str, float]:
    """TailorLM's engine, measured in the parent as token events arrive."""
    gen, pp, ttft_overhead = [], [], []
    with EngineClient() as client:
        client.load(
            P.Load(model_path=str(model), n_ctx=n_prompt + n_gen + 64, n_threads=threads, flash_attn="on")
        )
        words = _prompt_text(n_prompt).split()
        # Exactly one n_prompt-token batch, like llama-bench's pp: trim the text to fit.
        lo, hi = 1, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (
                (mid, hi) if client.count_tokens("0 " + " ".join(words[:mid])) <= n_prompt else (lo, mid - 1)
            )
        text = " ".join(words[:lo])
        for i in range(reps):
            prompt = f"{i} {text}"  # a new first token: no prompt-cache reuse between repetitions
            t0 = time.perf_counter()
            t_first = None
            n = 0
            done = None
            for ev in client.generate(prompt, P.Sampling(temperature=0, max_tokens=n_gen, ignore_eos=True,
                                                         repeat_penalty=1.0), flush_ms=20):  # fmt: skip
                if isinstance(ev, P.TokenChunk):
                    if t_first is None:
                        t_first = time.perf_counter()
                    n += ev.n_tokens
                else:
                    done = ev
            t1 = time.perf_counter()
            assert done is not None and t_first is not None
            pp.append(done.n_prompt_evaluated / (done.ttft_ms / 1000))
            gen.append(done.n_gen_tokens / (t1 - t0 - done.ttft_ms / 1000))
            ttft_overhead.append((t_first - t0) * 1000 - done.ttft_ms)
    return {"prompt_tok_s": statistics.median(pp), "gen_tok_s": statistics.median(gen),
            "ttft_overhead_ms": statistics.median(ttft_overhead)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all three; medians reported")
    args = ap.parse_args()
    exe = llama_bench()
    results = []
    for model in (models.smollm2_path(), models.gemma3_path()):
        row: dict[str, object] = {"model": model.name}
        runs: dict[str, list[dict[str, float]]] = {"llama_bench": [], "llama_cpp_python": [], "engine": []}
        # Interleave the three, round after round, so the shared machine's noise hits them alike.
        for _ in range(args.rounds):
            runs["llama_bench"].append(
                bench_llama_bench(exe, model, args.threads, args.prompt, args.gen, args.reps)
            )
            runs["llama_cpp_python"].append(
                bench_llama_cpp_python(model, args.threads, args.prompt, args.gen, args.reps)
            )
            runs["engine"].append(bench_engine(model, args.threads, args.prompt, args.gen, args.reps))
        for name, rs in runs.items():
            row[name] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        lb, lp, en = row["llama_bench"], row["llama_cpp_python"], row["engine"]
        row["ratios"] = {
            "engine_gen_vs_llama_bench": en["gen_tok_s"] / lb["gen_tok_s"],  # type: ignore[index]
            "engine_prompt_vs_llama_bench": en["prompt_tok_s"] / lb["prompt_tok_s"],  # type: ignore[index]
            "llama_cpp_python_gen_vs_llama_bench": lp["gen_tok_s"] / lb["gen_tok_s"],  # type: ignore[index]
        }
        row["per_round_engine_gen_ratio"] = [
            e["gen_tok_s"] / b["gen_tok_s"] for e, b in zip(runs["engine"], runs["llama_bench"], strict=True)
        ]
        results.append(row)
    print(json.dumps({"benchmark": "engine_speed", "threads": args.threads, "n_prompt": args.prompt,
                      "n_gen": args.gen, "results": results}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

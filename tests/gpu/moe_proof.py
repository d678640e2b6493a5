"""Prove expert offload on a real NVIDIA GPU (issue 16): Qwen3-30B-A3B shapes at Q4_K_M with an
8 GB and a 16 GB VRAM budget, every placement the advisor weighs loaded and timed.

Run on the GPU machine by ``tests/gpu/moe_device.sh``:

    python tests/gpu/moe_proof.py write MODELS_DIR        # Q8_0 weights with the real shapes (gguf package)
    python tests/gpu/moe_proof.py run --models MODELS_DIR --out results.json --bench LLAMA_BENCH
    python tests/gpu/moe_proof.py report results.json [--markdown]

``write`` writes the weights directly as Q8_0 (half the disk of F16; the device has 64 GiB), which
``moe_device.sh`` requantizes to Q4_K_M with ``llama-quantize --allow-requantize``. ``run`` asks
``tailorlm advise --json`` for each budget, then for every placement weighed — the pick, the layer
split, all experts in RAM — loads the model with the engine (the app's own ``--n-cpu-moe``), reads
NVML's used VRAM and the process's RSS after a 512-token prompt and 8 tokens, times generation in
the parent (64 tokens at a depth of 512, twice), and runs ``llama-bench`` with the same ``-ngl`` and
``-ncmoe``. ``report`` re-predicts every load with the checkout's estimator and speed model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.estimate import RunSettings, estimate  # noqa: E402
from app.core.advice.speed import predict_speed  # noqa: E402
from app.core.errors import EngineError  # noqa: E402
from app.core.units import GIB  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests.gpu.gpu_proof import (  # noqa: E402
    Journal,
    Nvml,
    _snapshot,
    _wait_released,
    cli_json,
    header_summary,
    log,
    model_from_summary,
    prompt_of,
)
from tests.gpu.speed_proof import answer_rates  # noqa: E402

MODEL_ID, QUANT, N_CTX = "qwen3-30b-a3b", "Q4_K_M", 8192
BUDGETS = ("8GB", "16GB")
N_PROMPT, N_DECODE, N_GEN, REPS = 512, 8, 64, 2
# The 2026-12-03 record predates the probe's link reading: an H200 SXM's host link is PCIe 5.0 x16
# (NVIDIA H200 datasheet: "PCIe Gen5: 128GB/s", both directions).
H200_LINK_BYTES_S = 16 * 3.938e9
Q8_BLOCK = 34  # bytes per 32 weights: an f16 scale and 32 int8 (ggml-common.h block_q8_0)


# --- the model ----------------------------------------------------------------------------------


class _Q8Blocks:
    """Valid Q8_0 blocks (scale 0.02/127, uniform int8: weights of about ±0.02), written cyclically
    from a pool so a 200 MB expert tensor is never materialized (``GGUFWriter.write_tensor_data``
    wants ``nbytes`` and ``tofile``)."""

    POOL_BLOCKS = 1 << 16

    def __init__(self, rng: np.random.Generator) -> None:
        blocks = np.empty((self.POOL_BLOCKS, Q8_BLOCK), np.uint8)
        blocks[:, :2] = np.full(self.POOL_BLOCKS, 0.02 / 127, np.float16).view(np.uint8).reshape(-1, 2)
        blocks[:, 2:] = rng.integers(-127, 128, (self.POOL_BLOCKS, 32), dtype=np.int8).view(np.uint8)
        self.pool = blocks.reshape(-1)

    def tensor(self, n_elements: int, start: int) -> Any:
        pool = self.pool

        class Streamed:
            nbytes = n_elements // 32 * Q8_BLOCK

            def tofile(self, fout: BinaryIO) -> None:
                left, pos = self.nbytes, start * Q8_BLOCK % len(pool)
                while left:
                    chunk = pool[pos : pos + left]
                    fout.write(chunk.data)
                    left -= len(chunk)
                    pos = 0

        return Streamed()


def write_model(folder: Path, n_layers: int | None = None) -> Path:
    import gguf

    from app.core.model.catalog import find_entry
    from app.core.model.hf_arch import header_from_hf_config
    from tests.synthetic import DTYPES, _add_metadata, _add_tokenizer, _Pool, _tensor_data, _truncated

    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{MODEL_ID}-Q8_0.gguf"
    if dest.exists():
        return dest
    t0 = time.perf_counter()
    header = _truncated(header_from_hf_config(find_entry(MODEL_ID).config, dtype="Q8_0"), n_layers)
    arch = header.architecture
    rng = np.random.default_rng(0)
    blocks, pool = _Q8Blocks(rng), _Pool(0)
    tmp = dest.with_suffix(".part")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_name("TailorLM synthetic model")
    _add_metadata(writer, header)
    _add_tokenizer(writer, int(header.metadata[f"{arch}.vocab_size"]))
    for t in header.tensors:
        if t.type_name == "Q8_0":
            writer.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.int8), t.n_bytes,
                                   raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # fmt: skip
        else:
            np_dtype, ggml_type = DTYPES[t.type_name]
            writer.add_tensor_info(
                t.name, tuple(reversed(t.shape)), np.dtype(np_dtype), t.n_bytes, raw_dtype=ggml_type
            )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in header.tensors:
        if t.type_name == "Q8_0":
            writer.write_tensor_data(blocks.tensor(t.n_elements, int(rng.integers(0, blocks.POOL_BLOCKS))))
        else:
            writer.write_tensor_data(_tensor_data(t, pool, rng))
    writer.close()
    tmp.replace(dest)
    log(f"wrote {dest.name} ({dest.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    return dest


# --- one placement ------------------------------------------------------------------------------


def measure(path: Path, ngl: int, moe: int, threads: int, gpu: Nvml) -> dict[str, Any]:
    """Load with the engine, a 512-token prompt and 8 tokens, VRAM and RSS; then generation timed
    in the parent as the token events arrive. A failed load is a result too."""
    base = gpu.used()
    rec: dict[str, Any] = {"n_gpu_layers": ngl, "moe_cpu_layers": moe, "used_before_bytes": base}
    with EngineClient() as client:
        client.start()
        try:
            loaded = client.load(P.Load(model_path=str(path), n_ctx=N_CTX, n_gpu_layers=ngl, moe_cpu_layers=moe,
                                        n_threads=threads, flash_attn="on"))  # fmt: skip
        except EngineError as e:
            log(f"  load FAILED ngl={ngl} moe={moe}: {e}")
            return {**rec, "ok": False, "error": str(e)}
        rec["after_load"] = _snapshot(gpu, client.pid)
        text = prompt_of(client, N_PROMPT)

        def greedy(n: int) -> P.Sampling:
            return P.Sampling(temperature=0, max_tokens=n, ignore_eos=True, repeat_penalty=1.0)

        done = [ev for ev in client.generate(text, greedy(N_DECODE)) if isinstance(ev, P.Done)]
        rec["after_decode"] = _snapshot(gpu, client.pid)
        rec.update(ok=True, buffers=loaded.buffers, load_s=round(loaded.load_s, 2),
                   prompt_tok_s=done[0].n_prompt_tokens / (done[0].ttft_ms / 1000) if done[0].ttft_ms else None)  # fmt: skip
        # timed in the parent as speed_proof times it: (tokens - 1) over first token event to last event
        gen = [answer_rates(client, f"{i} {text}", greedy(N_GEN))["gen_tok_s"] for i in range(REPS)]
        rec.update(gen_tok_s=statistics.median(gen), gen_tok_s_runs=[round(g, 2) for g in gen])
    rec["used_after_exit_bytes"] = _wait_released(gpu, base)
    vram = (rec["after_decode"]["device_used_bytes"] or 0) - (base or 0)
    log(f"  ngl={ngl} moe={moe}: {vram / GIB:.2f} GiB VRAM, {(rec['after_decode']['rss_bytes'] or 0) / GIB:.2f} GiB RSS, "
        f"{rec['gen_tok_s']:.1f} tok/s")  # fmt: skip
    return rec


def llama_bench(bench: str, path: Path, ngl: int, moe: int, threads: int) -> dict[str, Any]:
    cmd = [bench, "-m", str(path), "-ngl", str(ngl), "-ncmoe", str(moe), "-fa", "1", "-p", str(N_PROMPT),
           "-n", str(N_GEN), "-d", str(N_PROMPT), "-r", str(REPS), "-t", str(threads), "-o", "json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        return {"error": out.stderr[-600:], "command": " ".join(cmd[1:])}
    rows = json.loads(out.stdout)
    pp = next(r for r in rows if r["n_prompt"] > 0)
    tg = next(r for r in rows if r["n_gen"] > 0)
    return {"prompt_tok_s": float(pp["avg_ts"]), "gen_tok_s": float(tg["avg_ts"]),
            "gen_tok_s_runs": tg.get("samples_ts"), "command": " ".join(cmd[1:])}  # fmt: skip


# --- the run -----------------------------------------------------------------------------------


def placements(plan: dict[str, Any], n_layer: int) -> list[tuple[int, int]]:
    """(n_gpu_layers, moe_cpu_layers) of the pick, of every placement it was weighed against, and
    of all experts in RAM with every layer on the GPU (llama.cpp's --cpu-moe)."""
    out = [(plan["n_gpu_layers"], plan["moe_cpu_layers"])]
    out += [(o["n_gpu_layers"], o["moe_cpu_layers"]) for o in plan["alternatives"]]
    out.append((n_layer + 1, n_layer))
    return list(dict.fromkeys(out))


def run(args: argparse.Namespace) -> int:
    j = Journal(Path(args.out))
    j.data["benchmark"] = "moe_proof"
    gpu = Nvml()
    path = Path(args.models) / f"{MODEL_ID}-{QUANT}.gguf"
    j.data["hw"] = hw = cli_json("hw")
    threads = int(hw["cpu"]["physical_cores"] or 8)
    j.data.update(model=path.name, models={path.name: header_summary(path)}, threads=threads, n_ctx=N_CTX,
                  loads={}, budgets={})  # fmt: skip
    j.save()
    n_layer = int(j.data["models"][path.name]["metadata"]["qwen3moe.block_count"])
    for budget in BUDGETS:
        advice = cli_json("advise", str(path), "--vram", budget, "--ctx", str(N_CTX))
        plan = next(p for p in advice["plans"] if p["quant"] == QUANT and p["n_ctx"] == N_CTX)
        j.data["budgets"][budget] = {"free_bytes": advice["budget"]["gpus"][0]["free_bytes"], "plan": plan,
                                     "reasons": advice["reasons"], "placements": placements(plan, n_layer)}  # fmt: skip
        j.save()
        for ngl, moe in j.data["budgets"][budget]["placements"]:
            key = f"{ngl}|{moe}"
            if key in j.data["loads"]:
                continue
            log(f"{budget}: ngl={ngl} moe={moe}")
            rec = measure(path, ngl, moe, threads, gpu)
            rec["llama_bench"] = llama_bench(args.bench, path, ngl, moe, threads) if rec.get("ok") else None
            j.data["loads"][key] = rec
            j.save()
    j.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    j.save()
    print(json.dumps(report(j.data)["summary"], indent=1))
    return 0


# --- the report --------------------------------------------------------------------------------


def predict(j: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """Today's estimator and speed model for one recorded load, on the recorded machine."""
    model = model_from_summary(j["model"], j["models"][j["model"]])
    hw = j["hw"]
    gpu = hw["gpus"][0] if hw["gpus"] else {"name": "", "bandwidth_bytes_s": 300e9}  # a CPU dry run
    s = RunSettings(n_ctx=j["n_ctx"], n_gpu_layers=rec["n_gpu_layers"], moe_cpu_layers=rec["moe_cpu_layers"],
                    flash_attn=True, has_gpu=True, gpu_backend="cuda", cpu_isa=tuple(hw["cpu"]["isa"]))  # fmt: skip
    e = estimate(model, None, s, filled_tokens=N_PROMPT + N_DECODE)
    sp = predict_speed(model, model.tensors, e, cpu_bandwidth_bytes_s=hw["ram_bandwidth_bytes_s"],
                       gpu_bandwidth_bytes_s={"GPU0": gpu["bandwidth_bytes_s"]}, cpu_threads=j["threads"],
                       gpu_names={"GPU0": gpu["name"]}, depth_tokens=N_PROMPT + N_GEN // 2,
                       host_link_bytes_s=gpu.get("host_link_bytes_s") or H200_LINK_BYTES_S)  # fmt: skip
    return {
        "vram_bytes": e.vram_bytes,
        "rss_bytes": e.rss_bytes,
        "gen_tok_s": sp.tok_s,
        "prompt_tok_s": sp.prompt_tok_s,
    }


def report(j: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for key, rec in j["loads"].items():
        row: dict[str, Any] = {"load": key, "n_gpu_layers": rec["n_gpu_layers"], "moe_cpu_layers": rec["moe_cpu_layers"],
                               "ok": rec.get("ok")}  # fmt: skip
        if rec.get("ok"):
            p = predict(j, rec)
            used, base = rec["after_decode"]["device_used_bytes"], rec["used_before_bytes"]
            vram = used - base if used is not None and base is not None else 0  # 0: no NVML (a CPU dry run)
            rss = rec["after_decode"]["rss_bytes"]
            bench = rec.get("llama_bench") or {}
            row.update(predicted_vram_bytes=p["vram_bytes"], measured_vram_bytes=vram,
                       vram_error=p["vram_bytes"] / vram - 1 if vram else None, predicted_rss_bytes=p["rss_bytes"], measured_rss_bytes=rss,
                       rss_error=p["rss_bytes"] / rss - 1, gen_tok_s=rec["gen_tok_s"], predicted_gen_tok_s=p["gen_tok_s"],
                       gen_error=p["gen_tok_s"] / rec["gen_tok_s"] - 1, bench_gen_tok_s=bench.get("gen_tok_s"),
                       bench_prompt_tok_s=bench.get("prompt_tok_s"), predicted_prompt_tok_s=p["prompt_tok_s"])  # fmt: skip
            if bench.get("gen_tok_s"):
                row["engine_over_bench"] = rec["gen_tok_s"] / bench["gen_tok_s"]
            if bench.get("prompt_tok_s"):
                row["prompt_error"] = p["prompt_tok_s"] / bench["prompt_tok_s"] - 1
        rows.append(row)
    by_key = {r["load"]: r for r in rows}
    picks = {}
    for budget, b in j["budgets"].items():
        measured = [by_key[f"{n}|{m}"] for n, m in b["placements"] if by_key.get(f"{n}|{m}", {}).get("ok")]
        fitting = [r for r in measured if r["measured_vram_bytes"] <= b["free_bytes"]]
        fastest = max(fitting, key=lambda r: r["gen_tok_s"]) if fitting else None
        pick = f"{b['plan']['n_gpu_layers']}|{b['plan']['moe_cpu_layers']}"
        picks[budget] = {"pick": pick, "fastest_measured_that_fits": fastest["load"] if fastest else None,
                         "pick_is_fastest": fastest is not None and fastest["load"] == pick}  # fmt: skip

    def stats(name: str) -> dict[str, Any]:
        errs = [abs(r[name]) for r in rows if r.get(name) is not None]
        return {"n": len(errs), "median_abs": statistics.median(errs) if errs else None,
                "worst_abs": max(errs) if errs else None}  # fmt: skip

    ratios = [r["engine_over_bench"] for r in rows if "engine_over_bench" in r]
    summary = {"loads": len(rows), "loads_ok": sum(1 for r in rows if r["ok"]), "vram": stats("vram_error"),
               "rss": stats("rss_error"), "generation": stats("gen_error"), "prompt": stats("prompt_error"),
               "engine_over_bench_min": min(ratios) if ratios else None, "picks": picks}  # fmt: skip
    return {"summary": summary, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("folder")
    w.add_argument("--layers", type=int, help="only the first N layers (a dry run of the pipeline on a CPU)")
    r = sub.add_parser("run")
    r.add_argument("--models", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--bench", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "write":
        write_model(Path(args.folder), args.layers)
        return 0
    if args.cmd == "run":
        return run(args)
    print(json.dumps(report(json.loads(Path(args.results).read_text())), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

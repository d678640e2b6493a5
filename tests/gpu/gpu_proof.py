"""Prove the GPU path on a real NVIDIA GPU: detection, plans, VRAM and RAM, speed, planning against
free VRAM, and out-of-memory errors that name their cause (issue 7).

Run on the GPU machine by ``tests/gpu/device.sh``, which builds llama.cpp with CUDA and writes the
models first:

    python tests/gpu/gpu_proof.py write MODELS_DIR          # F16 models with real shapes (catalog configs)
    python tests/gpu/gpu_proof.py run --models MODELS_DIR --out results.json --quantize BIN --bench BIN
    python tests/gpu/gpu_proof.py report results.json [--markdown]

``run`` records raw measurements — NVML's used VRAM and the model process's RSS after loading and
after a 512-token prompt and 8 decoded tokens, and llama.cpp's own buffer sizes — beside each model's
tensor table, so ``report`` re-predicts them with the estimator of the checkout it runs in, anywhere,
no GPU needed. Everything goes through the app's own front doors: ``tailorlm hw --json``,
``tailorlm advise --json`` and the engine (``EngineClient``) in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.estimate import RunSettings, estimate  # noqa: E402
from app.core.errors import EngineError  # noqa: E402
from app.core.model.gguf_header import ArrayLength, GGUFHeader, TensorInfo, read_gguf_file  # noqa: E402
from app.core.model.info import ModelInfo, model_info_from_header  # noqa: E402
from app.core.units import GIB, MIB  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from tests.bench.engine_speed import _prompt_text  # noqa: E402

MODEL_IDS = ("llama-3.2-3b-instruct", "llama-3.1-8b-instruct")  # 3B first: it is ready first
QUANTS = ("Q4_K_M", "Q8_0")
CONTEXTS = (4096, 32768)
VRAM_OVERRIDES = (None, "8GB", "4GB")  # None: the card as NVML reports it
N_PROMPT, N_DECODE = 512, 8  # a full ubatch, so the compute buffers are really used
# Free VRAM left by the "other process": less than the 8B Q8_0 weights need, more than Q4_K_M's.
HOG_LEAVES_BYTES = 6 * GIB
HUGE_CTX = 131072  # the "context far too large" case: 16 GiB of f16 KV cache for an 8B model


# --- bookkeeping ------------------------------------------------------------------------------


class Journal:
    """The results dict, written to disk after every step so a cut-off run still says what it saw."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"benchmark": "gpu_proof", "started": _now(), "loads": {}, "cases": []}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class Nvml:
    """Used VRAM of GPU 0, and one process's share where the driver reports it; None without NVML."""

    def __init__(self) -> None:
        self.nv: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.nv = pynvml
        except Exception:  # no driver or no GPU: a CPU dry run of this script
            self.nv = None

    def used(self) -> int | None:
        return int(self.nv.nvmlDeviceGetMemoryInfo(self.handle).used) if self.nv else None

    def free(self) -> int | None:
        return int(self.nv.nvmlDeviceGetMemoryInfo(self.handle).free) if self.nv else None

    def process(self, pid: int | None) -> int | None:
        if not self.nv or pid is None:
            return None
        try:
            for p in self.nv.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if p.pid == pid and p.usedGpuMemory:
                    return int(p.usedGpuMemory)
        except Exception:
            return None
        return None


def _rss(pid: int | None) -> int | None:
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss) if pid else None
    except psutil.NoSuchProcess:
        return None


def cli_json(*args: str) -> dict[str, Any]:
    """``python -m app ARGS --json`` in a child, as a user would run it."""
    out = subprocess.run([sys.executable, "-m", "app", *args, "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=False)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"tailorlm {' '.join(args)} failed: {out.stderr[-800:]}")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# --- models -----------------------------------------------------------------------------------


def write_models(folder: Path, model_ids: tuple[str, ...]) -> None:
    from app.core.model.catalog import find_entry
    from tests.synthetic import write_synthetic_gguf

    folder.mkdir(parents=True, exist_ok=True)
    for mid in model_ids:
        dest = folder / f"{mid}-F16.gguf"
        if not dest.exists():
            t0 = time.perf_counter()
            tmp = dest.with_suffix(".part")
            write_synthetic_gguf(find_entry(mid).config, tmp)
            tmp.replace(dest)
            log(
                f"wrote {dest.name} ({dest.stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - t0:.0f} s"
            )


def model_file(folder: Path, mid: str, quant: str, quantize: str | None, *, wait_s: float = 900) -> Path:
    """The model as ``quant``: quantized by device.sh (waited for while its ``.planned`` marker is
    there), else quantized now from the F16 or, once that is deleted, the Q8_0 file
    (``--allow-requantize``: the tensor types follow the target type, which is what memory sees)."""
    path = folder / f"{mid}-{quant}.gguf"
    planned = path.with_name(path.name + ".planned")
    deadline = time.monotonic() + wait_s
    while not path.exists() and planned.exists() and time.monotonic() < deadline:
        time.sleep(2)  # device.sh quantizes the 8B model in the background
    if path.exists():
        return path
    src = next((p for p in (folder / f"{mid}-F16.gguf", folder / f"{mid}-Q8_0.gguf") if p.exists()), None)
    if src is None:
        raise FileNotFoundError(f"no source to quantize {mid} to {quant}")
    t0 = time.perf_counter()
    tmp = path.with_suffix(".part")
    if quantize:
        subprocess.run([quantize, "--allow-requantize", str(src), str(tmp), quant, str(os.cpu_count() or 4)],
                       check=True, capture_output=True)  # fmt: skip
    else:
        from tests.synthetic import quantize_gguf

        quantize_gguf(src, tmp, quant)
    tmp.replace(path)
    log(f"quantized {path.name} from {src.name} in {time.perf_counter() - t0:.0f} s")
    return path


def header_summary(path: Path) -> dict[str, Any]:
    """What the estimator needs of a GGUF, small enough to keep with the results."""
    h = read_gguf_file(path)
    meta = {
        k: ({"array": v.item_type, "length": v.length} if isinstance(v, ArrayLength) else v)
        for k, v in h.metadata.items()
        if not isinstance(v, list) or len(v) <= 64
    }
    return {
        "metadata": meta,
        "tensors": [[t.name, list(t.shape), t.type_name, t.offset_bytes] for t in h.tensors],
        "file_size_bytes": h.file_size_bytes,
    }


def model_from_summary(name: str, s: dict[str, Any]) -> ModelInfo:
    meta = {
        k: (ArrayLength(v["array"], v["length"]) if isinstance(v, dict) and "array" in v else v)
        for k, v in s["metadata"].items()
    }
    tensors = tuple(TensorInfo(n, tuple(shape), t, off) for n, shape, t, off in s["tensors"])
    header = GGUFHeader(meta, tensors, file_size_bytes=s["file_size_bytes"])
    return model_info_from_header(header, source=name, source_kind="gguf")


# --- one load ---------------------------------------------------------------------------------


def prompt_of(client: EngineClient, n_tokens: int) -> str:
    """Text that is exactly ``n_tokens`` tokens (or just under) for the loaded model."""
    words = _prompt_text(n_tokens * 2).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if client.count_tokens("0 " + " ".join(words[:mid])) <= n_tokens else (lo, mid - 1)
    return " ".join(words[:lo])


def _snapshot(gpu: Nvml, pid: int | None) -> dict[str, int | None]:
    return {"device_used_bytes": gpu.used(), "process_vram_bytes": gpu.process(pid), "rss_bytes": _rss(pid)}


def load_key(path: Path, n_ctx: int, ngl: int, tag: str = "") -> str:
    return f"{tag}{path.name}|{n_ctx}|{ngl}"


def measure(path: Path, n_ctx: int, ngl: int, threads: int, gpu: Nvml) -> dict[str, Any]:
    """Load with the engine, prompt + decode, and read VRAM and RSS; a failed load is a result too."""
    base = gpu.used()
    rec: dict[str, Any] = {"model": path.name, "n_ctx": n_ctx, "n_gpu_layers": ngl, "used_before_bytes": base}
    t0 = time.perf_counter()
    with EngineClient() as client:
        client.start()
        try:
            loaded = client.load(P.Load(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=ngl, n_threads=threads,
                                        flash_attn="on"))  # fmt: skip
        except EngineError as e:
            rec.update(ok=False, error=str(e), hint=e.hint, wall_s=round(time.perf_counter() - t0, 1))
            log(f"  load FAILED {path.name} ctx={n_ctx} ngl={ngl}: {e}")
            return rec
        rec["after_load"] = _snapshot(gpu, client.pid)
        done = None
        sampling = P.Sampling(temperature=0, max_tokens=N_DECODE, ignore_eos=True, repeat_penalty=1.0)
        try:
            for ev in client.generate(prompt_of(client, N_PROMPT), sampling):
                if isinstance(ev, P.Done):
                    done = ev
        except EngineError as e:  # e.g. the GPU ran out of memory mid-answer: a result too
            rec.update(ok=False, stage="generate", error=str(e), hint=e.hint)
            log(f"  generate FAILED {path.name} ctx={n_ctx} ngl={ngl}: {e}")
            return rec
        assert done is not None
        rec["after_decode"] = _snapshot(gpu, client.pid)
        rec.update(ok=True, buffers=loaded.buffers, load_s=round(loaded.load_s, 2), n_threads=loaded.n_threads,
                   flash_attn=loaded.flash_attn, n_prompt_tokens=done.n_prompt_tokens, n_gen_tokens=done.n_gen_tokens,
                   gen_tok_s=round(done.gen_tok_s, 1), child_peak_rss_bytes=done.peak_rss_bytes)  # fmt: skip
    rec["used_after_exit_bytes"] = _wait_released(gpu, base)
    rec["wall_s"] = round(time.perf_counter() - t0, 1)
    used = rec["after_decode"]["device_used_bytes"]
    vram = f"{(used - base) / GIB:.2f} GiB VRAM, " if used is not None and base is not None else ""
    log(
        f"  {path.name} ctx={n_ctx} ngl={ngl}: {vram}{(rec['after_decode']['rss_bytes'] or 0) / GIB:.2f} GiB RSS"
    )
    return rec


def _wait_released(gpu: Nvml, base: int | None) -> int | None:
    deadline = time.monotonic() + 15
    used = gpu.used()
    while base is not None and used is not None and used > base + 64 * MIB and time.monotonic() < deadline:
        time.sleep(0.2)
        used = gpu.used()
    return used


# --- speed ------------------------------------------------------------------------------------


def engine_speed(
    path: Path, n_ctx: int, ngl: int, threads: int, *, n_gen: int = 128, reps: int = 3
) -> dict[str, Any]:
    """Generation at a depth of 512 tokens, measured in the parent as token events arrive
    (as tests/bench/engine_speed.py does on the CPU)."""
    gen, child = [], []
    with EngineClient() as client:
        client.load(
            P.Load(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=ngl, n_threads=threads, flash_attn="on")
        )
        text = prompt_of(client, N_PROMPT)
        for i in range(reps):
            t0 = time.perf_counter()
            done = None
            for ev in client.generate(f"{i} {text}", P.Sampling(temperature=0, max_tokens=n_gen, ignore_eos=True,
                                                                repeat_penalty=1.0), flush_ms=20):  # fmt: skip
                if isinstance(ev, P.Done):
                    done = ev
            t1 = time.perf_counter()
            assert done is not None
            gen.append(done.n_gen_tokens / (t1 - t0 - done.ttft_ms / 1000))
            child.append(done.gen_tok_s)
    return {"gen_tok_s": statistics.median(gen), "gen_tok_s_runs": [round(g, 1) for g in gen],
            "child_gen_tok_s": statistics.median(child), "n_gen": n_gen, "depth": N_PROMPT}  # fmt: skip


def llama_bench_speed(
    bench: str, path: Path, ngl: int, threads: int, *, n_gen: int = 128, reps: int = 3
) -> dict[str, Any]:
    cmd = [bench, "-m", str(path), "-ngl", str(ngl), "-fa", "1", "-p", "0", "-n", str(n_gen), "-d", str(N_PROMPT),
           "-r", str(reps), "-t", str(threads), "-o", "json"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    row = json.loads(out.stdout)[0]
    return {"gen_tok_s": float(row["avg_ts"]), "stddev_tok_s": float(row.get("stddev_ts", 0.0)),
            "command": " ".join(cmd[1:])}  # fmt: skip


# --- another process holds the card -----------------------------------------------------------

_HOG = """
import sys, time, torch
free, total = torch.cuda.mem_get_info()
x = torch.empty(max(0, free - int(sys.argv[1])), dtype=torch.uint8, device="cuda")
print("ready", x.numel(), flush=True)
time.sleep(3600)
"""


@contextmanager
def vram_hog(leave_bytes: int) -> Iterator[int]:
    """A torch process that allocates all free VRAM but ``leave_bytes``, until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", _HOG, str(leave_bytes)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError("the VRAM hog did not start")
        yield int(line[1])
    finally:
        proc.kill()
        proc.wait()


# --- the run ----------------------------------------------------------------------------------


def plan_for(advice: dict[str, Any], quant: str, n_ctx: int) -> dict[str, Any]:
    p = next(p for p in advice["plans"] if p["quant"] == quant and p["n_ctx"] == n_ctx)
    return {
        k: p[k]
        for k in ("quant", "n_ctx", "n_gpu_layers", "placement", "fits", "vram_bytes", "ram_bytes", "tok_s")
    }


def run(args: argparse.Namespace) -> int:
    j = Journal(Path(args.out))
    gpu = Nvml()
    folder = Path(args.models)
    model_ids = tuple(args.model_ids)
    contexts = tuple(args.contexts)
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        smi = ""
    j.data["nvidia_smi"] = smi
    hw = cli_json("hw")
    j.data["hw"] = {k: hw[k] for k in ("cpu", "ram_total_bytes", "ram_available_bytes", "ram_bandwidth_bytes_s",
                                       "gpus", "offload", "notes")}  # fmt: skip
    g0 = hw["gpus"][0] if hw["gpus"] else {}
    log(f"hw: {g0.get('name')} {g0.get('vram_free_bytes', 0) / GIB:.1f}/{g0.get('vram_total_bytes', 0) / GIB:.1f} "
        f"GiB free, driver {g0.get('driver_version')}, offload {hw['offload']['build_supports_gpu']}")  # fmt: skip
    threads = args.threads or int(hw["cpu"]["physical_cores"])
    j.data["threads"] = threads
    j.data["models"] = {}
    j.save()

    def ensure(mid: str, quant: str) -> Path:
        path = model_file(folder, mid, quant, args.quantize)
        if path.name not in j.data["models"]:
            j.data["models"][path.name] = header_summary(path)
        return path

    def load(path: Path, n_ctx: int, ngl: int, tag: str = "") -> str:
        key = load_key(path, n_ctx, ngl, tag)
        if key not in j.data["loads"]:
            j.data["loads"][key] = measure(path, n_ctx, ngl, threads, gpu)
            j.save()
        return key

    j.data["errors"] = []

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        """A failing phase is recorded and the run goes on to the next."""
        try:
            yield
        except Exception as e:
            import traceback

            j.data["errors"].append(
                {"phase": name, "error": repr(e), "traceback": traceback.format_exc()[-3000:]}
            )
            log(f"PHASE {name} FAILED: {e!r}")
        j.save()

    with phase("advise"):
        advise_cases(j, args, folder, model_ids, contexts, ensure, load)
    with phase("sweep"):
        j.data["sweep"] = []
        for mid, quant, n_ctx, ngls in args.sweep:
            path = ensure(mid, quant)
            for ngl in ngls:
                j.data["sweep"].append(load(path, n_ctx, ngl))
    if gpu.nv is not None and not args.no_hog:
        with phase("free_vram"):
            free_vram_test(j, gpu, folder, model_ids[-1], contexts, threads, ensure, load)
    with phase("speed"):
        speed_cases(j, args, folder, threads)
    j.data["finished"] = _now()
    with phase("report"):
        j.data["report_at_run"] = report(j.data)
        log(json.dumps(j.data["report_at_run"]["summary"]))
    return 0


def advise_cases(j: Journal, args: argparse.Namespace, folder: Path, model_ids: tuple[str, ...],
                 contexts: tuple[int, ...], ensure: Any, load: Any) -> None:  # fmt: skip
    """``tailorlm advise`` for each model, quant, context and VRAM budget; load each plan for the
    file's own quant, and the recommended plan."""
    for mid in model_ids:
        for quant in QUANTS:
            path = ensure(mid, quant)
            for n_ctx in contexts:
                for vram in args.vram_overrides:
                    flags = ["--vram", vram] if vram != "real" else []
                    adv = cli_json("advise", str(path), "--ctx", str(n_ctx), *flags)
                    plan = plan_for(adv, quant, n_ctx)
                    case: dict[str, Any] = {"model_id": mid, "quant": quant, "file": path.name, "n_ctx": n_ctx,
                                            "vram": vram, "budget_vram_bytes": adv["budget"]["gpus"][0]["free_bytes"]
                                            if adv["budget"]["gpus"] else None, "plan": plan}  # fmt: skip
                    log(
                        f"{mid} {quant} ctx={n_ctx} vram={vram}: ngl={plan['n_gpu_layers']} ({plan['placement']})"
                    )
                    case["load"] = load(path, n_ctx, plan["n_gpu_layers"])
                    rec = adv["recommended"]
                    if rec is not None:
                        rpath = ensure(mid, rec["quant"])
                        case["recommended"] = {k: rec[k] for k in ("quant", "n_ctx", "n_gpu_layers", "placement",
                                                                   "vram_bytes", "ram_bytes")}  # fmt: skip
                        case["recommended"]["load"] = load(rpath, rec["n_ctx"], rec["n_gpu_layers"])
                    j.data["cases"].append(case)
                    j.save()


def speed_cases(j: Journal, args: argparse.Namespace, folder: Path, threads: int) -> None:
    """The engine against llama-bench with the same layers, threads and depth."""
    j.data["speed"] = []
    if not args.bench:
        return
    for mid, quant, n_ctx, vram in args.speed:
        case = next((c for c in j.data["cases"] if (c["model_id"], c["quant"], c["n_ctx"], c["vram"])
                     == (mid, quant, n_ctx, vram)), None)  # fmt: skip
        if case is None:
            continue
        path, ngl = folder / case["file"], case["plan"]["n_gpu_layers"]
        row: dict[str, Any] = {"model": path.name, "n_ctx": n_ctx, "n_gpu_layers": ngl, "vram": vram,
                               "threads": threads}  # fmt: skip
        try:
            row["engine"] = engine_speed(path, n_ctx, ngl, threads)
            row["llama_bench"] = llama_bench_speed(args.bench, path, ngl, threads)
            row["ratio"] = row["engine"]["gen_tok_s"] / row["llama_bench"]["gen_tok_s"]
            log(f"speed {path.name} ngl={ngl}: engine {row['engine']['gen_tok_s']:.1f} vs llama-bench "
                f"{row['llama_bench']['gen_tok_s']:.1f} tok/s = {row['ratio']:.3f}")  # fmt: skip
        except (EngineError, subprocess.SubprocessError, ValueError, KeyError) as e:
            row["error"] = str(e)[-500:]
        j.data["speed"].append(row)
        j.save()


def free_vram_test(j: Journal, gpu: Nvml, folder: Path, mid: str, contexts: tuple[int, ...], threads: int,
                   ensure: Any, load: Any) -> None:  # fmt: skip
    """Plans against free VRAM while a torch process holds the rest; plans that cannot fit fail in words."""
    out: dict[str, Any] = {"cases": [], "oom": []}
    j.data["free_vram"] = out
    with vram_hog(HOG_LEAVES_BYTES) as held:
        out["hog_bytes"] = held
        hw = cli_json("hw", "--no-bandwidth")
        out["hw_gpus"] = hw["gpus"]
        log(f"hog holds {held / GIB:.1f} GiB; hw says {hw['gpus'][0]['vram_free_bytes'] / GIB:.2f} GiB free")
        for quant in QUANTS:
            path = ensure(mid, quant)
            for n_ctx in contexts:
                adv = cli_json("advise", str(path), "--ctx", str(n_ctx))
                plan = plan_for(adv, quant, n_ctx)
                case: dict[str, Any] = {"file": path.name, "quant": quant, "n_ctx": n_ctx, "plan": plan,
                                        "budget_vram_bytes": adv["budget"]["gpus"][0]["free_bytes"],
                                        "free_before_bytes": gpu.free()}  # fmt: skip
                case["load"] = load(path, n_ctx, plan["n_gpu_layers"])
                rec = adv["recommended"]
                if rec is not None:
                    rpath = ensure(mid, rec["quant"])
                    case["recommended"] = {
                        k: rec[k] for k in ("quant", "n_gpu_layers", "placement", "vram_bytes")
                    }
                    case["recommended"]["load"] = load(rpath, rec["n_ctx"], rec["n_gpu_layers"])
                log(f"free-VRAM {path.name} ctx={n_ctx}: ngl={plan['n_gpu_layers']} loaded="
                    f"{j.data['loads'][case['load']].get('ok')}")  # fmt: skip
                out["cases"].append(case)
                j.save()
        # Plans that do not fit: a VRAM override beyond what is free, and a context far too large.
        q8 = ensure(mid, "Q8_0")
        adv = cli_json("advise", str(q8), "--ctx", str(contexts[0]), "--vram", "80GB")
        over = plan_for(adv, "Q8_0", contexts[0])
        q4 = ensure(mid, "Q4_K_M")
        good = cli_json("advise", str(q4), "--ctx", str(contexts[0]))
        good_plan = plan_for(good, "Q4_K_M", contexts[0])
        bad = [("VRAM override of 80GB, more than is free", q8, contexts[0], over["n_gpu_layers"]),
               (f"{HUGE_CTX:,}-token context on the GPU", q4, HUGE_CTX, 999)]  # fmt: skip
        with EngineClient() as client:
            for what, path, n_ctx, ngl in bad:
                row: dict[str, Any] = {"case": what, "model": path.name, "n_ctx": n_ctx, "n_gpu_layers": ngl,
                                       "free_before_bytes": gpu.free()}  # fmt: skip
                try:
                    client.load(P.Load(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=ngl, n_threads=threads,
                                       flash_attn="on"))  # fmt: skip
                    row.update(loaded=True)
                    client.unload()
                except EngineError as e:
                    row.update(loaded=False, error=str(e), hint=e.hint, engine_alive=client.pid is not None)
                log(f"OOM case {what}: {row.get('error', 'LOADED?!')}")
                out["oom"].append(row)
                j.save()
            # The same engine, after both failures, still loads the advisor's plan and answers.
            after: dict[str, Any] = {"model": q4.name, "n_gpu_layers": good_plan["n_gpu_layers"]}
            try:
                client.load(P.Load(model_path=str(q4), n_ctx=contexts[0], n_gpu_layers=good_plan["n_gpu_layers"],
                                   n_threads=threads, flash_attn="on"))  # fmt: skip
                n = sum(ev.n_tokens for ev in client.generate("Hello", P.Sampling(temperature=0, max_tokens=16,
                        ignore_eos=True)) if isinstance(ev, P.TokenChunk))  # fmt: skip
                after.update(loaded=True, generated_tokens=n)
            except EngineError as e:
                after.update(loaded=False, error=str(e))
            out["after_failures"] = after
            j.save()


# --- report -----------------------------------------------------------------------------------


def predict(j: dict[str, Any], key: str) -> dict[str, Any]:
    m = j["loads"][key]
    model = model_from_summary(m["model"], j["models"][m["model"]])
    isa = tuple(j["hw"]["cpu"]["isa"])
    s = RunSettings(n_ctx=m["n_ctx"], n_gpu_layers=m["n_gpu_layers"], flash_attn=True, has_gpu=True,
                    gpu_backend="cuda", cpu_isa=isa)  # fmt: skip
    e = estimate(model, None, s, filled_tokens=m.get("n_prompt_tokens", N_PROMPT) + N_DECODE)
    return {"vram_bytes": e.vram_bytes, "rss_bytes": e.rss_bytes, "ram_bytes": e.ram_bytes,
            "devices": [d.to_dict() for d in e.devices]}  # fmt: skip


def measured(m: dict[str, Any]) -> tuple[int | None, int | None]:
    a = m.get("after_decode") or {}
    used, base = a.get("device_used_bytes"), m.get("used_before_bytes")
    return (used - base if used is not None and base is not None else None), a.get("rss_bytes")


def report(j: dict[str, Any]) -> dict[str, Any]:
    """Predicted (today's estimator) vs measured for every load the plans asked for."""
    rows = []
    plan_keys = [c["load"] for c in j["cases"]] + [
        c["recommended"]["load"] for c in j["cases"] if "recommended" in c
    ]
    fv = j.get("free_vram") or {}
    plan_keys += [c["load"] for c in fv.get("cases", [])]
    plan_keys += [c["recommended"]["load"] for c in fv.get("cases", []) if "recommended" in c]
    for key in j["loads"]:
        m = j["loads"][key]
        row: dict[str, Any] = {"load": key, "from_plan": key in plan_keys, "ok": m.get("ok")}
        if m.get("ok"):
            p = predict(j, key)
            vram, rss = measured(m)
            row.update(predicted_vram_bytes=p["vram_bytes"], predicted_rss_bytes=p["rss_bytes"],
                       measured_vram_bytes=vram, measured_rss_bytes=rss)  # fmt: skip
            if vram:
                row["vram_error"] = (p["vram_bytes"] - vram) / vram
            if rss:
                row["rss_error"] = (p["rss_bytes"] - rss) / rss
        rows.append(row)

    def stats(name: str, sel: list[dict[str, Any]]) -> dict[str, Any]:
        errs = [abs(r[name]) for r in sel if name in r]
        return {"n": len(errs), "median_abs": statistics.median(errs) if errs else None,
                "worst_abs": max(errs) if errs else None}  # fmt: skip

    planned = [r for r in rows if r["from_plan"]]
    speed = [s["ratio"] for s in j.get("speed", []) if "ratio" in s]
    summary = {
        "plan_loads": len(planned),
        "plan_loads_ok": sum(1 for r in planned if r["ok"]),
        "vram": stats("vram_error", planned),
        "rss": stats("rss_error", planned),
        "vram_all_loads": stats("vram_error", rows),
        "rss_all_loads": stats("rss_error", rows),
        "speed_ratio_min": min(speed) if speed else None,
        "speed_ratio_median": statistics.median(speed) if speed else None,
        "oom_errors": [o.get("error") for o in fv.get("oom", [])],
    }
    return {"summary": summary, "rows": rows}


def markdown(j: dict[str, Any], rep: dict[str, Any]) -> str:
    by_key = {r["load"]: r for r in rep["rows"]}
    speed = {(s["model"], s["n_ctx"], s["n_gpu_layers"]): s for s in j.get("speed", [])}

    def gib(n: int | None) -> str:
        return f"{n / GIB:.2f}" if n is not None else "–"

    def pct(x: float | None) -> str:
        return f"{100 * x:+.1f} %" if x is not None else "–"

    lines = ["| model | quant | ctx | VRAM budget | GPU layers | predicted VRAM / RAM (GiB) | measured VRAM / RSS (GiB) "
             "| error VRAM / RAM | tok/s engine / llama-bench |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in j["cases"]:
        r = by_key[c["load"]]
        m = j["loads"][c["load"]]
        s = speed.get((m["model"], m["n_ctx"], m["n_gpu_layers"]))
        tok = (f"{s['engine']['gen_tok_s']:.1f} / {s['llama_bench']['gen_tok_s']:.1f} ({s['ratio']:.2f}×)"
               if s and "ratio" in s else "")  # fmt: skip
        budget = "card (free)" if c["vram"] == "real" else c["vram"]
        name = c["model_id"].replace("-instruct", "")
        lines.append(f"| {name} | {c['quant']} | {c['n_ctx'] // 1024}k | {budget} | {m['n_gpu_layers']} | "
                     f"{gib(r.get('predicted_vram_bytes'))} / {gib(r.get('predicted_rss_bytes'))} | "
                     f"{gib(r.get('measured_vram_bytes'))} / {gib(r.get('measured_rss_bytes'))} | "
                     f"{pct(r.get('vram_error'))} / {pct(r.get('rss_error'))} | {tok} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write F16 models with real shapes")
    w.add_argument("folder")
    w.add_argument("--model-ids", nargs="*", default=list(MODEL_IDS))
    r = sub.add_parser("run", help="measure on this machine")
    r.add_argument("--models", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--quantize", help="llama-quantize binary (default: llama-cpp-python's quantizer)")
    r.add_argument("--bench", help="llama-bench binary; without it, no speed comparison")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--model-ids", nargs="*", default=list(MODEL_IDS))
    r.add_argument("--contexts", nargs="*", type=int, default=list(CONTEXTS))
    r.add_argument("--vram-overrides", nargs="*", default=[v or "real" for v in VRAM_OVERRIDES])
    r.add_argument("--no-hog", action="store_true")
    r.add_argument("--quick", action="store_true", help="a CPU dry run of the script's logic")
    r.add_argument(
        "--lean", action="store_true", help="no layer sweep; speed only with every layer offloaded"
    )
    p = sub.add_parser("report", help="predicted vs measured with this checkout's estimator")
    p.add_argument("results")
    p.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.cmd == "write":
        write_models(Path(args.folder), tuple(args.model_ids))
        return 0
    if args.cmd == "run":
        big = args.model_ids[-1]
        args.sweep = [
            (big, "Q4_K_M", args.contexts[0], (0, 1, 16)),
            (args.model_ids[0], "Q8_0", args.contexts[0], (0,)),
        ]
        args.speed = [(m, q, args.contexts[0], "real") for m in reversed(args.model_ids) for q in QUANTS]
        args.speed += [(big, "Q4_K_M", args.contexts[0], "4GB"), (big, "Q4_K_M", args.contexts[-1], "8GB")]
        if args.quick:
            args.sweep, args.speed = args.sweep[:1], args.speed[:1]
        if args.lean:
            args.sweep, args.speed = [], args.speed[: len(QUANTS) * len(args.model_ids)]
        return run(args)
    j = json.loads(Path(args.results).read_text())
    rep = report(j)
    print(markdown(j, rep) if args.markdown else json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

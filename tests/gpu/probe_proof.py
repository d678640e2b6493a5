"""Prove the machine probe, the sampler's per-process VRAM and the chat planner on a real NVIDIA GPU.

On the GPU machine, from the project root with ``.gpu/`` beside it (``bash ../shared/gpu/prepare.sh``):

    python3 tests/gpu/probe_proof.py device [WAIT_S]   # starts the detached pipeline, waits, copies to $OUT

The pipeline (``pipeline``) copies the tree to /opt/w/repo, installs the missing wheels into
/tmp/site, builds llama.cpp with CUDA (.gpu/build.sh) while it writes a synthetic
llama-3.2-1b-instruct F16 GGUF, then ``run MODEL`` prints one JSON object:

1. ``probe_devices()`` (a child: NVML + llama.cpp's offload), ``detect_machine`` twice (cache hit);
2. ``MemoryMonitor(pid)``'s ``child_vram_bytes`` against llama.cpp's CUDA buffers;
3. ``plan_chat`` with the machine's budget (half the layers, and auto) against measured VRAM.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
W = Path("/opt/w")
REPO, OUTDIR, MODELS = W / "repo", W / "probe_out", W / "models"
MODEL_ID = "llama-3.2-1b-instruct"
GIB, MIB = 1 << 30, 1 << 20
WHEELS = ("psutil:psutil", "pynvml:nvidia_ml_py", "platformdirs:platformdirs", "gguf:gguf", "yaml:pyyaml",
          "tqdm:tqdm", "requests:requests", "certifi:certifi", "idna:idna", "urllib3:urllib3",
          "charset_normalizer:charset_normalizer")  # fmt: skip


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --- the device side: detached pipeline ---------------------------------------------------------


def device(wait_s: int) -> int:
    OUTDIR.mkdir(parents=True, exist_ok=True)
    if not (OUTDIR / "started").exists():
        (OUTDIR / "started").write_text(time.ctime())
        if REPO.exists():
            shutil.rmtree(REPO)
        REPO.mkdir(parents=True)
        for name in ("app", "tests", ".gpu", "pyproject.toml"):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, REPO / name, ignore=shutil.ignore_patterns("__pycache__", ".git"))
            elif src.exists():
                shutil.copy2(src, REPO / name)
        with open(OUTDIR / "pipeline.log", "wb") as f:
            subprocess.Popen([sys.executable, str(REPO / "tests/gpu/probe_proof.py"), "pipeline"], cwd=REPO,
                             stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    for _ in range(wait_s // 5):
        if (OUTDIR / "done").exists():
            break
        time.sleep(5)
    print("done:", (OUTDIR / "done").read_text() if (OUTDIR / "done").exists() else "no")
    text = (OUTDIR / "pipeline.log").read_text(errors="replace") if (OUTDIR / "pipeline.log").exists() else ""
    print("\n".join(text.splitlines()[-80:]))
    out = os.environ.get("OUT")
    if out:
        for name in ("result.json", "pipeline.log", "run.log", "write.log"):
            if (OUTDIR / name).exists():
                shutil.copy(OUTDIR / name, Path(out) / name)
    return 0


def pipeline() -> int:
    py = sys.executable
    try:
        subprocess.run(["nvidia-smi"], check=False)
        need = []
        for pair in WHEELS:
            mod, dist = pair.split(":")
            if subprocess.run([py, "-c", f"import {mod}"], capture_output=True).returncode != 0:
                need += [str(p) for p in (REPO / ".gpu/wheels").glob(f"{dist}-*.whl")]
        log(f"installing {[Path(n).name for n in need]}")
        if need:
            subprocess.run([py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                            "--no-cache-dir", "--target", "/tmp/site", *need], check=True)  # fmt: skip
        env = dict(os.environ, PYTHONPATH=f"{W}/py:/tmp/site:{REPO}", LLAMA_CPP_LIB_PATH=f"{W}/llama.cpp/build/bin",
                   PYTHONUNBUFFERED="1", TAILORLM_HOME=str(W / "home"))  # fmt: skip
        MODELS.mkdir(parents=True, exist_ok=True)
        model = MODELS / f"{MODEL_ID}-F16.gguf"
        wlog = open(OUTDIR / "write.log", "wb")  # noqa: SIM115 - the writer child keeps it open past this block
        writer = subprocess.Popen([py, str(REPO / "tests/gpu/probe_proof.py"), "write", str(model)], cwd=REPO,
                                  env=env, stdout=wlog, stderr=subprocess.STDOUT)  # fmt: skip
        while True:
            b = subprocess.run(["bash", ".gpu/build.sh"], cwd=REPO, capture_output=True, text=True)
            log("build: " + " | ".join(b.stdout.strip().splitlines()[-3:]))
            if "done=0" in b.stdout:
                break
            done = next((ln[5:].strip() for ln in b.stdout.splitlines() if ln.startswith("done=")), "")
            if done:
                log("BUILD FAILED")
                subprocess.run(["tail", "-40", f"{W}/llama.cpp/build/bld.log"])
                return 1
        rc = writer.wait()
        log(f"writer rc={rc}: {(OUTDIR / 'write.log').read_text(errors='replace')[-500:]}")
        if rc != 0:
            return 1
        q8 = MODELS / f"{MODEL_ID}-Q8_0.gguf"
        q = subprocess.run([f"{W}/llama.cpp/build/bin/llama-quantize", str(model), str(q8), "Q8_0", "16"],
                           capture_output=True, text=True)  # fmt: skip
        log(f"quantize rc={q.returncode} {q.stderr[-300:] if q.returncode else ''}")
        with open(OUTDIR / "result.json", "wb") as rf, open(OUTDIR / "run.log", "wb") as lf:
            r = subprocess.run([py, str(REPO / "tests/gpu/probe_proof.py"), "run", str(model), str(q8)], cwd=REPO, env=env,
                               stdout=rf, stderr=lf, timeout=900)  # fmt: skip
        log(f"run rc={r.returncode}")
        subprocess.run(["tail", "-30", str(OUTDIR / "run.log")])
        return 0
    finally:
        (OUTDIR / "done").write_text(time.ctime())


def write(path: str) -> int:
    sys.path.insert(0, str(ROOT))
    from app.core.model.catalog import find_entry
    from tests.synthetic import write_synthetic_gguf

    t0 = time.perf_counter()
    tmp = Path(path + ".part")
    write_synthetic_gguf(find_entry(MODEL_ID).config, tmp)
    tmp.replace(path)
    log(f"wrote {path} ({Path(path).stat().st_size / GIB:.2f} GiB) in {time.perf_counter() - t0:.0f} s")
    return 0


# --- the proof ------------------------------------------------------------------------------------


def smi(*fields: str, query: str = "--query-gpu") -> list[list[str]]:
    try:
        out = subprocess.run(["nvidia-smi", f"{query}={','.join(fields)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=False).stdout  # fmt: skip
    except OSError:
        return []
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]


class Nvml:
    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nv, self.h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)

    def used(self) -> int:
        return int(self.nv.nvmlDeviceGetMemoryInfo(self.h).used)

    def procs(self) -> dict[int, int | None]:
        out: dict[int, int | None] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                for p in getattr(self.nv, fn)(self.h):
                    out[int(p.pid)] = None if p.usedGpuMemory is None else int(p.usedGpuMemory)
            except Exception as e:
                out[-1] = None
                log(f"{fn}: {e!r}")
        return out


def settle(nv: Nvml, s: float = 1.5) -> int:
    time.sleep(s)
    return nv.used()


def mib(n: int | None) -> float | None:
    return None if n is None else round(n / MIB, 1)


def cuda_buffers(buffers: dict[str, int]) -> dict[str, float | None]:
    return {k: mib(v) for k, v in buffers.items() if "CUDA" in k}


def run(model_path: str, extra_models: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    res: dict[str, Any] = {
        "benchmark": "probe_proof",
        "model": MODEL_ID,
        "model_path": model_path,
        "errors": [],
    }

    def err(where: str, e: BaseException) -> None:
        res["errors"].append({"where": where, "error": f"{type(e).__name__}: {e}",
                              "trace": traceback.format_exc()[-2000:]})  # fmt: skip
        log(f"ERROR {where}: {e!r}")

    gpu = smi("name", "driver_version", "memory.total", "memory.used", "compute_cap")
    res["memory_reserved_check"] = {"smi_total_reserved_used_free": smi("memory.total", "memory.reserved", "memory.used",
                                                                        "memory.free")}  # fmt: skip
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        m1 = pynvml.nvmlDeviceGetMemoryInfo(h)
        res["memory_reserved_check"]["nvml_v1_mib"] = {
            "total": mib(m1.total),
            "used": mib(m1.used),
            "free": mib(m1.free),
        }
        try:
            m2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
            res["memory_reserved_check"]["nvml_v2_mib"] = {"total": mib(m2.total), "reserved": mib(m2.reserved),
                                                           "used": mib(m2.used), "free": mib(m2.free)}  # fmt: skip
        except Exception as e:
            res["memory_reserved_check"]["nvml_v2_error"] = repr(e)
        res["memory_reserved_check"]["pynvml_version"] = (
            getattr(pynvml, "__version__", None) or pynvml.__file__
        )
    except Exception as e:
        err("nvml v1/v2", e)
    res["machine"] = {"nvidia_smi": gpu, "smi_version": subprocess.run(["nvidia-smi", "--version"], capture_output=True,
                      text=True).stdout.strip().splitlines()[:4]}  # fmt: skip
    try:
        import llama_cpp

        res["machine"]["llama_cpp_python"] = llama_cpp.__version__
        res["machine"]["llama_cpp_lib_path"] = os.environ.get("LLAMA_CPP_LIB_PATH")
        res["machine"]["llama_cpp_file"] = llama_cpp.__file__
    except Exception as e:
        err("import llama_cpp", e)
    nv = Nvml()

    # 1. the probe --------------------------------------------------------------------------------
    from app.core.machine import probe
    from app.core.machine.hardware import detect_machine

    calls = {"n": 0}
    real_run = probe._run_probe

    def counted(timeout_s: float):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real_run(timeout_s)

    probe._run_probe = counted  # type: ignore[assignment]
    r1: dict[str, Any] = {}
    res["probe"] = r1
    profile = None
    try:
        t0 = time.perf_counter()
        rep = probe.probe_devices(refresh=True)
        r1["probe_s"] = round(time.perf_counter() - t0, 2)
        r1["report"] = rep.to_dict()
        r1["from_cache_first"] = rep.from_cache
        g = rep.nvidia_gpus[0] if rep.nvidia_gpus else None
        expect = {
            "gpu_found": g is not None,
            "name_matches_smi": bool(g and gpu and g.name == gpu[0][0]),
            "driver_matches_smi": bool(g and gpu and g.driver_version == gpu[0][1]),
            "vram_total_matches_smi": bool(g and gpu and g.vram_total_bytes is not None
                                           and abs(g.vram_total_bytes / MIB - float(gpu[0][2])) <= 1),
            "compute_capability_9_0": bool(g and g.compute_capability == "9.0"),
            "offload_supported": rep.offload.supported,
            "build_supports_gpu": rep.offload.build_supports_gpu,
            "backend_cuda": "CUDA" in rep.offload.backends,
            "cuda0_device": any(d.name == "CUDA0" for d in rep.offload.devices),
        }  # fmt: skip
        r1["checks"] = expect
        t0 = time.perf_counter()
        profile = detect_machine(measure_bandwidth=False)
        r1["detect1_s"] = round(time.perf_counter() - t0, 2)
        runs_after_1 = calls["n"]
        t0 = time.perf_counter()
        profile2 = detect_machine(measure_bandwidth=False)
        r1["detect2_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        rep3 = probe.probe_devices()
        r1["probe3_s"] = round(time.perf_counter() - t0, 2)
        r1["probe_children"] = {
            "after_refresh_and_detect1": runs_after_1,
            "after_detect2_and_probe3": calls["n"],
        }
        r1["detect_gpus"] = [dict(vars(x).items()) for x in profile.gpus]
        r1["detect_notes"] = list(profile.notes)
        r1["detect2_gpus_equal_names"] = [x.name for x in profile2.gpus] == [x.name for x in profile.gpus]
        r1["third_probe_from_cache"] = rep3.from_cache
        r1["cache_key"] = probe.probe_key()
        r1["checks"].update({
            "detect_same_gpu": bool(profile.gpus and g and profile.gpus[0].name == g.name
                                    and profile.gpus[0].vram_total_bytes == g.vram_total_bytes
                                    and profile.gpus[0].compute_capability == g.compute_capability),
            "second_call_cache_hit": rep3.from_cache and calls["n"] == 1,
        })  # fmt: skip
    except Exception as e:
        err("probe", e)

    # 2. the sampler's per-process VRAM -------------------------------------------------------------
    from app.engine import protocol as P
    from app.engine.client import EngineClient
    from app.engine.monitor import MemoryMonitor

    r2: dict[str, Any] = {}
    res["sampler"] = r2
    try:
        base = settle(nv, 0.5)
        r2["baseline_used_mib"] = mib(base)
        with EngineClient() as eng:
            eng.start()
            pid = eng.pid
            assert pid is not None
            r2["pid"] = pid
            with MemoryMonitor(pid) as mon:
                t0 = time.perf_counter()
                loaded = eng.load(P.Load(model_path=model_path, n_ctx=4096, n_gpu_layers=99, flash_attn="on"))
                r2["load_s"] = round(time.perf_counter() - t0, 2)
                used = settle(nv, 2.0)
                mon.sample()
                latest = mon.latest
                r2["buffers_mib"] = {k: mib(v) for k, v in loaded.buffers.items()}
                cuda = sum(v for k, v in loaded.buffers.items() if "CUDA" in k and "Host" not in k)
                r2["llama_cuda_buffers_mib"] = mib(cuda)
                r2["monitor_child_vram_mib"] = mib(latest.child_vram_bytes)
                r2["monitor_child_vram_is_none"] = latest.child_vram_bytes is None
                r2["monitor_child_vram_is_zero"] = latest.child_vram_bytes == 0
                r2["monitor_device_used_mib"] = mib(latest.device_vram_used_bytes)
                r2["monitor_peak_child_vram_mib"] = mib(mon.peak.child_vram_bytes)
                r2["monitor_subscription_error"] = (
                    mon._subscription.error if mon._subscription else "no subscription"
                )
                sample = mon._subscription.latest if mon._subscription else None
                r2["sampler_process_vram"] = (
                    {str(k): mib(v) for k, v in sample.process_vram_bytes.items()} if sample else None
                )
                r2["nvml_used_mib"] = mib(used)
                r2["nvml_used_delta_mib"] = mib(used - base)
                r2["nvml_procs_mib"] = {str(k): mib(v) for k, v in nv.procs().items()}
                r2["smi_compute_apps"] = smi("pid", "used_memory", query="--query-compute-apps")
                r2["cuda_context_mib_from_delta"] = mib(used - base - cuda)
                if latest.child_vram_bytes:
                    r2["child_vram_minus_buffers_mib"] = mib(latest.child_vram_bytes - cuda)
                    r2["child_vram_vs_used_delta_pct"] = round(100 * (latest.child_vram_bytes - (used - base))
                                                               / (used - base), 2)  # fmt: skip
    except Exception as e:
        err("sampler", e)

    # 3. the chat planner ---------------------------------------------------------------------------
    from app.core.advice.chat_plan import ChatOverrides, plan_chat
    from app.core.advice.recommend import budget_from_profile
    from app.core.model.gguf_header import read_gguf_file
    from app.core.model.info import model_info_from_header

    r3: dict[str, Any] = {"plans": []}
    res["planner"] = r3
    try:
        profile = detect_machine(measure_bandwidth=False)
        budget = budget_from_profile(profile)
        r3["budget"] = {"ram_mib": mib(budget.ram_bytes), "can_offload": budget.can_offload,
                        "gpus": [{"name": x.name, "free_mib": mib(x.free_bytes), "backend": x.backend}
                                 for x in budget.gpus]}  # fmt: skip
        cases = []
        for path in [model_path, *(extra_models or [])]:
            if not Path(path).exists():
                continue
            model = model_info_from_header(read_gguf_file(path), source=path, source_kind="gguf")
            r3["n_layer"] = model.n_layer
            tag = Path(path).stem.rsplit("-", 1)[-1]
            cases += [(f"{tag} half", model.n_layer // 2, model), (f"{tag} auto", None, model),
                      (f"{tag} cpu", 0, model)]  # fmt: skip
    except Exception as e:
        err("planner setup", e)
        cases = []
    for label, n, model in cases:
        row: dict[str, Any] = {"case": label, "n_gpu_layers_asked": n}
        r3["plans"].append(row)
        try:
            planned = plan_chat(model, budget, ChatOverrides(n_gpu_layers=n))
            s = planned.settings
            row.update({"fits": planned.plan.fits, "n_gpu_layers": planned.plan.n_gpu_layers, "n_ctx": s.n_ctx,
                        "settings": {k: getattr(s, k) for k in ("n_ctx", "n_gpu_layers", "n_batch", "n_ubatch",
                                     "type_k", "type_v", "flash_attn", "use_mmap", "swa_full")},
                        "pred_vram_mib": mib(planned.plan.vram_bytes), "pred_ram_mib": mib(planned.plan.ram_bytes)})  # fmt: skip
            with contextlib.suppress(TypeError):
                row["pred_breakdown"] = {k: (mib(v) if isinstance(v, int) else v) for k, v in
                                         vars(planned.plan.estimate).items() if isinstance(v, (int, float, str))}  # fmt: skip
            base = settle(nv, 1.0)
            with EngineClient() as eng:
                eng.start()
                pid = eng.pid
                req = P.Load.from_plan(planned)
                loaded = eng.load(req)
                used = settle(nv, 2.0)
                procs = nv.procs()
                # a short prompt so the compute buffers are really used
                for _ in eng.generate("Hello " * 520, P.Sampling(max_tokens=8, ignore_eos=True)):
                    pass
                used2 = settle(nv, 1.0)
                procs2 = nv.procs()
                apps = smi("pid", "used_memory", query="--query-compute-apps")
            meas = used2 - base
            pp = procs.get(pid or -2)
            cuda = sum(v for k, v in loaded.buffers.items() if "CUDA" in k and "Host" not in k)
            row.update({"loaded_n_gpu_layers": loaded.n_gpu_layers, "flash_attn": loaded.flash_attn,
                        "buffers_mib": {k: mib(v) for k, v in loaded.buffers.items()},
                        "llama_cuda_buffers_mib": mib(cuda),
                        "meas_used_delta_after_load_mib": mib(used - base),
                        "meas_used_delta_after_gen_mib": mib(meas), "nvml_process_mib": mib(pp),
                        "smi_compute_apps": apps})  # fmt: skip
            pp2 = procs2.get(pid or -2)
            row["nvml_process_after_gen_mib"] = mib(pp2)
            if pp2:
                row["error_pct_after_gen"] = round(100 * (planned.plan.vram_bytes - pp2) / pp2, 2)
                row["runtime_after_gen_mib"] = mib(pp2 - cuda)
            if pp:
                row["runtime_after_load_mib"] = mib(pp - cuda)
            ref = pp if pp else meas
            row["measured_vram_mib"] = mib(ref)
            row["measured_from"] = "nvml per-process" if pp else "device used delta"
            if ref:
                row["error_pct"] = round(100 * (planned.plan.vram_bytes - ref) / ref, 2)
            elif planned.plan.vram_bytes == 0:
                row["error_pct"] = 0.0 if abs(meas) < 64 * MIB else None
        except Exception as e:
            err(f"planner {label}", e)
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "device"
    if cmd == "device":
        sys.exit(device(int(sys.argv[2]) if len(sys.argv) > 2 else 540))
    if cmd == "pipeline":
        sys.exit(pipeline())
    if cmd == "write":
        sys.exit(write(sys.argv[2]))
    if cmd == "run":
        sys.exit(run(sys.argv[2], sys.argv[3:]))
    sys.exit(f"unknown command {cmd}")

"""Benchmark: is the RAM the advisor says must fit enough? A memory cgroup decides (issue 15).

``ram_bytes`` leaves out the mapped file pages llama.cpp read once at load (``reclaimable_bytes``:
tensors it repacked, an untied input embedding), on the claim that the kernel takes them back when
memory is short. Here the kernel is made short of memory. Each run starts the app's model process
(``EngineClient``), moves it into a fresh memory cgroup right after the spawn, loads the model with
the plan ``tailorlm chat`` would load (``plan_chat`` → ``Load.from_plan``), reads a 512-token prompt
and writes 64 tokens. Three variants, interleaved round by round: no limit (first: it sets the time
limits), then the limit at the prediction + 3 % and at − 10 %, in alternating order.

The limit: ``ram_bytes`` counts the process's own baseline as ``PROCESS_BASE_BYTES``, a resident-set
figure that includes library pages other processes already hold, which the kernel charges to the
cgroup that read them first, not to this one. So that part is measured instead: the process's first
Load names a file that is not a GGUF, which loads llama.cpp's libraries without a model; what the
cgroup holds then is the baseline. fit = ram_bytes − PROCESS_BASE_BYTES + baseline; the limit is
fit × 1.03 or fit × 0.90, set before the model's Load.

Runs are independent: the model is a private copy no other process maps, evicted from the page cache
before each run, so its pages are charged to the run's own cgroup. Speeds are measured here as tokens
arrive: prompt = tokens ÷ (request → first token), generation = (tokens − 1) ÷ (first token → Done).
A limited run whose answer takes twice as long as the same round's free run (or its load three times)
is stopped, keeping the speeds of what it did. The cgroup says why a run slowed: model pages read
again after eviction (``workingset_refault_file``) per written token. Needs root and a writable
memory controller (cgroup v2, or v1's); elsewhere it prints why and measures nothing.

    sudo python tests/bench/ram_cgroup.py [--rounds 5] [--threads 2] [--quick] [--write]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.core.advice.chat_plan import ChatOverrides, ChatPlan, plan_chat  # noqa: E402
from app.core.advice.estimate import PROCESS_BASE_BYTES  # noqa: E402
from app.core.advice.recommend import budget_from_profile  # noqa: E402
from app.core.errors import EngineError  # noqa: E402
from app.core.model.source import model_from_gguf  # noqa: E402
from app.engine import protocol as P  # noqa: E402
from app.engine.client import EngineClient  # noqa: E402
from app.engine.errors import LoadFailed, ProcessDied  # noqa: E402
from app.engine.quality_eval import default_text  # noqa: E402
from tests import models  # noqa: E402
from tests.bench.estimate_accuracy import synthetic_model  # noqa: E402
from tests.bench.stop_latency import machine  # noqa: E402

RESULTS = ROOT / "tests" / "bench" / "results" / "ram_cgroup.json"
WORK = ROOT / ".cache" / "ram-cgroup"  # private copies of the models: no other process maps them
CONTEXTS = (1024, 4096)
PROMPT_TOKENS, GEN_TOKENS = 512, 64
VARIANTS = {"unlimited": None, "plus_3": 1.03, "minus_10": 0.90}  # limit = fit × factor
KEPT, COLLAPSED = 0.9, 0.5  # issue 15: +3 % keeps ≥ 0.9× the speed; −10 % fails or falls below 0.5×
SETUP_FACTOR, ANSWER_FACTOR = 3.0, 2.0  # a limited run this much slower than the free one is stopped
PAGE = os.sysconf("SC_PAGE_SIZE")


# The same figures under their v1 and v2 names (Linux docs: cgroup-v1/memory.rst, cgroup-v2.rst).
_V1 = {"limit": "memory.limit_in_bytes", "usage": "memory.usage_in_bytes", "peak": "memory.max_usage_in_bytes",
       "file": "cache", "anon": "rss", "oom": "memory.oom_control", "no_swap": "memory.swappiness"}  # fmt: skip
_V2 = {"limit": "memory.max", "usage": "memory.current", "peak": "memory.peak", "file": "file", "anon": "anon",
       "oom": "memory.events", "no_swap": "memory.swap.max"}  # fmt: skip


class Cgroup:
    """One fresh memory cgroup (v2, or v1's memory controller), without swap."""

    def __init__(self, root: Path, v2: bool, name: str) -> None:
        self.path, self.names = root / name, _V2 if v2 else _V1
        self.path.mkdir()
        if (self.path / self.names["no_swap"]).exists():  # memory.swap.max: only with swap accounting
            (self.path / self.names["no_swap"]).write_text("0")

    def _int(self, key: str) -> int | None:
        try:
            return int((self.path / self.names[key]).read_text())
        except (OSError, ValueError):  # memory.peak: Linux 5.19+
            return None

    def _field(self, file: str, key: str) -> int | None:
        for line in (self.path / file).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
        return None

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def limit(self, n_bytes: int) -> None:
        (self.path / self.names["limit"]).write_text(str(n_bytes))

    def charges(self) -> dict[str, int | None]:
        """Peak and current charge, its file and anonymous parts, pages read again after eviction
        (the weights thrashing) and the cgroup's own OOM kills."""
        return {"peak_bytes": self._int("peak"), "usage_bytes": self._int("usage"),
                "file_bytes": self._field("memory.stat", self.names["file"]),
                "anon_bytes": self._field("memory.stat", self.names["anon"]),
                "refaulted_pages": self._field("memory.stat", "workingset_refault_file"),
                "oom_kills": self._field(self.names["oom"], "oom_kill")}  # fmt: skip

    def remove(self) -> None:
        for _ in range(100):  # a killed process leaves the group once reaped
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def cgroup_root() -> tuple[Path, bool] | str:
    """Where fresh memory cgroups can be made here, and whether it is v2; else why not."""
    v2 = Path("/sys/fs/cgroup")
    if (v2 / "cgroup.controllers").exists():
        if "memory" not in (v2 / "cgroup.subtree_control").read_text().split():
            return "cgroup v2 without the memory controller enabled for child groups"
        root, is_v2 = v2, True
    elif (v2 / "memory" / "memory.limit_in_bytes").exists():
        root, is_v2 = v2 / "memory", False
    else:
        return "no memory cgroup controller (v2 or v1) is mounted"
    if not os.access(root, os.W_OK):
        return f"{root} is not writable (run as root)"
    return root, is_v2


def private_copy(src: Path) -> Path:
    """A copy of ``src`` that only this benchmark maps, so evicting its pages really evicts them."""
    WORK.mkdir(parents=True, exist_ok=True)
    dst = WORK / src.name
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        shutil.copyfile(src, dst)
    return dst


def evict(path: Path) -> None:
    with path.open("rb") as f:  # clean pages nobody maps leave the page cache (posix_fadvise(2))
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def exact_prompt(client: EngineClient, n_tokens: int) -> str:
    """The longest start of the built-in text that is at most ``n_tokens`` tokens (BOS included)."""
    text, lo, hi = default_text(), 0, len(default_text())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if client.count_tokens(text[:mid]) <= n_tokens else (lo, mid - 1)
    return text[:lo]


def _read_bytes(pid: int) -> int:
    """Bytes the process caused to be read from the disk (``/proc/PID/io``): weights read again."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["read_bytes"])


@contextmanager
def _deadline(client: EngineClient, seconds: float | None, fired: threading.Event) -> Iterator[None]:
    """Kill the model process after ``seconds`` (None: never) and set ``fired``."""

    def stop() -> None:
        fired.set()
        client.kill()

    timer = threading.Timer(seconds or 0, stop)
    if seconds:
        timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _answer(client: EngineClient, group: Cgroup, prompt: str, r: dict[str, Any]) -> None:
    """Stream the answer, keeping the timings in ``r`` as they come: a run stopped midway keeps
    the speeds of what it did (the end of a stopped run is the moment it was stopped)."""
    sampling = P.Sampling(temperature=0, max_tokens=GEN_TOKENS, ignore_eos=True, repeat_penalty=1.0)
    t0, r["n_gen"] = time.perf_counter(), 0
    try:
        for ev in client.generate(prompt, sampling):
            now = time.perf_counter()
            if isinstance(ev, P.TokenChunk):
                if not r["n_gen"]:
                    r["prompt_s"] = now - t0
                    r["charges_after_prompt"] = group.charges()
                r["n_gen"] += ev.n_tokens
                r["gen_s"] = now - t0 - r["prompt_s"]
            else:
                r.update(n_prompt=ev.n_prompt_evaluated, gen_s=now - t0 - r["prompt_s"],
                         child_prompt_tok_s=ev.prompt_tok_s, child_gen_tok_s=ev.gen_tok_s,
                         peak_rss_bytes=ev.peak_rss_bytes)  # fmt: skip
    finally:
        if r["n_gen"]:
            r["gen_s"] = time.perf_counter() - t0 - r["prompt_s"]  # Done's arrival, or the stop
            r["prompt_tok_s"] = r["n_prompt"] / r["prompt_s"]
            r["gen_tok_s"] = (r["n_gen"] - 1) / r["gen_s"] if r["n_gen"] > 1 else None


def run_once(root: tuple[Path, bool], path: Path, planned: ChatPlan, factor: float | None, *,
             threads: int, limits_s: tuple[float, float] | None) -> dict[str, Any]:  # fmt: skip
    """One model process in a fresh cgroup: load, a 512-token prompt, 64 tokens. ``limits_s``:
    the most seconds for the setup (start to loaded) and for the answer; None: no limit."""
    evict(path)
    not_gguf = WORK / "not-a-model.gguf"
    not_gguf.write_bytes(b"not a GGUF file\n")
    group = Cgroup(*root, f"tailorlm-ram-bench-{os.getpid()}-{time.monotonic_ns()}")
    r: dict[str, Any] = {"factor": factor, "limit_bytes": None, "outcome": "completed", "error": None}
    setup_s, answer_s = limits_s or (None, None)
    stopped = threading.Event()
    t_start = time.perf_counter()
    try:
        with EngineClient() as client:
            try:
                with _deadline(client, setup_s, stopped):
                    client.start()
                    pid = client.pid
                    assert pid is not None
                    group.add(pid)
                    try:
                        client.load(P.Load(model_path=str(not_gguf)))
                        raise RuntimeError("a file that is not a GGUF loaded")
                    except LoadFailed:
                        pass  # llama.cpp's libraries are loaded now, without a model
                    r["charges_at_baseline"] = group.charges()
                    r["baseline_bytes"] = r["charges_at_baseline"]["usage_bytes"]
                    r["baseline_rss_bytes"] = client.stats().rss_bytes
                    if factor is not None:
                        fit = planned.plan.ram_bytes - PROCESS_BASE_BYTES + r["baseline_bytes"]
                        r["limit_bytes"] = round(fit * factor)
                        group.limit(r["limit_bytes"])
                    t0 = time.perf_counter()
                    loaded = client.load(P.Load.from_plan(planned, n_threads=threads))
                    r["load_s"] = time.perf_counter() - t0
                    r["released_bytes"] = loaded.released_bytes
                    r["charges_after_load"] = group.charges()
                    prompt = exact_prompt(client, PROMPT_TOKENS)
                    r["n_prompt"] = client.count_tokens(prompt)
                r["setup_s"] = time.perf_counter() - t_start
                with _deadline(client, answer_s, stopped):
                    _answer(client, group, prompt, r)
                r["read_bytes"] = _read_bytes(pid)
            except ProcessDied as died:
                r["outcome"] = "out_of_time" if stopped.is_set() else "killed"
                r["error"], r["hint"], r["oom_killed"] = str(died), died.hint, died.death.oom_killed
            except EngineError as exc:
                r["outcome"], r["error"], r["hint"] = "failed", str(exc), exc.hint
            r["charges"] = group.charges()
    finally:
        group.remove()
    r["wall_s"] = time.perf_counter() - t_start
    return r


def _median(values: list[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return statistics.median(known) if known else None


def _reread_per_token(x: dict[str, Any]) -> float | None:
    """Bytes of the model file read again per token written after the first (the weights thrashing)."""
    before, after = x.get("charges_after_prompt"), x.get("charges")
    if not before or not after or before["refaulted_pages"] is None or x["n_gen"] < 2:
        return None
    return float(after["refaulted_pages"] - before["refaulted_pages"]) * PAGE / (int(x["n_gen"]) - 1)


def summarize(case: dict[str, Any]) -> None:
    """Per variant: medians, and each round's ratio to the same round's unlimited run."""
    free = case["runs"]["unlimited"]
    for name, runs in case["runs"].items():
        v: dict[str, Any] = {
            "rounds": len(runs), "completed": sum(x["outcome"] == "completed" for x in runs),
            "outcomes": [x["outcome"] for x in runs], "limit_bytes": _median([x["limit_bytes"] for x in runs]),
            "baseline_bytes": _median([x.get("baseline_bytes") for x in runs]),
            "baseline_rss_bytes": _median([x.get("baseline_rss_bytes") for x in runs]),
            "peak_charge_bytes": _median([x["charges"]["peak_bytes"] for x in runs]),
            "reread_per_token_bytes": _median([_reread_per_token(x) for x in runs]),
            "reread_bytes": [n * PAGE for x in runs if (n := x["charges"]["refaulted_pages"]) is not None],
            "load_s": _median([x.get("load_s") for x in runs]),
            "errors": sorted({x["error"] for x in runs if x["error"]}),
        }  # fmt: skip
        for key in ("prompt_tok_s", "gen_tok_s"):
            v[key] = _median([x.get(key) for x in runs])
            # A run stopped before it got that far ran at no measurable speed: 0 against the free run.
            ratios = [(x.get(key) or 0.0) / f[key] for x, f in zip(runs, free, strict=True) if f.get(key)]
            v[f"{key}_ratios"], v[f"{key}_ratio"] = ratios, _median(ratios)
        case["variants"][name] = v
    plus, minus = case["variants"]["plus_3"], case["variants"]["minus_10"]
    plus["holds"] = plus["completed"] == plus["rounds"] and all(
        (plus[f"{k}_ratio"] or 0) >= KEPT for k in ("prompt_tok_s", "gen_tok_s")
    )
    killed = [x for x in case["runs"]["minus_10"] if x["outcome"] == "killed"]
    named = all("out of memory" in x["error"] for x in killed)
    minus["killed_named_out_of_memory"] = named if killed else None
    slow = (minus["gen_tok_s_ratio"] or 0) < COLLAPSED
    minus["verdict"] = "killed" if len(killed) > len(runs) // 2 else "collapsed" if slow else "kept speed"
    minus["holds"] = (slow or bool(killed)) and minus["killed_named_out_of_memory"] is not False


def _limits(free: dict[str, Any]) -> tuple[float, float]:
    """How long a limited run may take, from the same round's unlimited run: past the answer's limit
    its speed is below half the free run's, which is all the −10 % verdict needs."""
    if free["outcome"] != "completed":
        return 600.0, 600.0
    return SETUP_FACTOR * free["setup_s"] + 30, ANSWER_FACTOR * (free["prompt_s"] + free["gen_s"]) + 10


def _read_ahead_kb(path: Path) -> int | None:
    """The read-ahead of the disk under ``path``: about what a page fault of a mapped file reads."""
    try:
        dev = os.stat(path).st_dev
        return int(Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb").read_text())
    except (OSError, ValueError):  # a partition: its disk's figure is not looked up
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the two real models only")
    ap.add_argument("--only", default="", help="the models whose file name contains this")
    ap.add_argument("--write", action="store_true", help=f"store the results in {RESULTS.relative_to(ROOT)}")
    args = ap.parse_args()
    root = cgroup_root()
    if isinstance(root, str):
        print(json.dumps({"benchmark": "ram_cgroup", "skipped": f"no writable memory cgroup: {root}"}))
        return 0
    import psutil

    from app.core.machine.hardware import detect_machine

    budget = budget_from_profile(detect_machine(measure_bandwidth=False))
    sources = [models.smollm2_path(), models.gemma3_path()]
    if not args.quick:
        sources.append(synthetic_model("llama-3.2-1b-instruct", "Q4_K_M"))
    cases: list[dict[str, Any]] = []
    plans: list[tuple[Path, ChatPlan]] = []
    for src in (s for s in sources if args.only in s.name):
        path = private_copy(src)
        info = model_from_gguf(path)
        for n_ctx in CONTEXTS:
            planned = plan_chat(info, budget, ChatOverrides(n_ctx=n_ctx)).check()
            cpu = planned.plan.estimate.device("CPU")
            plans.append((path, planned))
            cases.append({"model": src.name, "quant": planned.quant, "n_ctx": n_ctx, "ram_bytes": planned.plan.ram_bytes,
                          "reclaimable_bytes": cpu.reclaimable_bytes, "file_bytes": path.stat().st_size,
                          "predicted": cpu.to_dict(), "runs": {v: [] for v in VARIANTS}, "variants": {}})  # fmt: skip
    before = machine()
    for rnd in range(args.rounds):
        for case, (path, planned) in zip(cases, plans, strict=True):
            limited = ["plus_3", "minus_10"] if rnd % 2 == 0 else ["minus_10", "plus_3"]
            for name in ["unlimited", *limited]:  # the free run first: it sets the time limits
                limits = _limits(case["runs"]["unlimited"][-1]) if name != "unlimited" else None
                r = run_once(root, path, planned, VARIANTS[name], threads=args.threads, limits_s=limits)
                case["runs"][name].append(r)
                print(json.dumps({"round": rnd, "model": case["model"], "n_ctx": case["n_ctx"], "variant": name,
                                  **{k: r.get(k) for k in ("outcome", "limit_bytes", "prompt_tok_s", "gen_tok_s",
                                                           "wall_s", "error")}}), file=sys.stderr, flush=True)  # fmt: skip
    for case in cases:
        summarize(case)
    out = {
        "benchmark": "ram_cgroup",
        "machine": {**before, "ram_bytes": psutil.virtual_memory().total, "kernel": platform.release(),
                    "cgroup": "v2" if root[1] else "v1 memory controller", "read_ahead_kb": _read_ahead_kb(WORK),
                    "load_avg_1min_after": machine()["load_avg_1min"]},
        "llama_cpp_python": importlib.metadata.version("llama-cpp-python"),
        "n_threads": args.threads, "rounds": args.rounds, "prompt_tokens": PROMPT_TOKENS, "gen_tokens": GEN_TOKENS,
        "process_base_bytes_predicted": PROCESS_BASE_BYTES,
        "limit": "fit = ram_bytes − process_base_bytes_predicted + baseline_bytes (this cgroup's charge once the "
                 "model process had started and loaded llama.cpp's libraries, before the model's Load); "
                 "limit = fit × 1.03 (plus_3) or fit × 0.90 (minus_10); unlimited: no limit",
        "criteria": {"plus_3_speed_kept": KEPT, "minus_10_collapsed_below": COLLAPSED,
                     "time_limits": f"setup {SETUP_FACTOR:g}× + 30 s, answer {ANSWER_FACTOR:g}× + 10 s of the round's free run"},
        "holds": {"plus_3_keeps_speed": all(c["variants"]["plus_3"]["holds"] for c in cases),
                  "minus_10_fails_or_collapses": all(c["variants"]["minus_10"]["holds"] for c in cases)},
        "cases": cases,
    }  # fmt: skip
    text = json.dumps(out, indent=2)
    print(text)
    if args.write:
        RESULTS.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

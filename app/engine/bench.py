"""A short measured run of one plan (``tailorlm bench``, the Advisor's Benchmark button): the model
loaded in a model process of its own exactly as a chat would load it, then llama-bench's
measurement there (:mod:`app.engine.bench_loop`): prompt speed over ``n_prompt`` tokens, generation
speed over ``n_gen`` tokens after them, repeated; medians with their spread, the load time and the
process's peak RAM and VRAM. ``budget_s`` bounds the whole run, load included (30 s by default):
the repetitions stop when it runs out, after at least one.

Every run is recorded as a profile (kind "bench") with the advisor's prediction for the same
settings beside it, which calibrates this machine's speed model
(:mod:`app.core.advice.speed_calibration`); a load that runs out of memory is recorded too, so the
advisor stops recommending that plan. A crash costs the model process only.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from app.core.advice.profiles import Measured, Predicted, utc_now
from app.core.errors import Cancelled, TailorError
from app.engine import protocol as P
from app.engine.client import EngineClient
from app.engine.cpu_share import OthersCpu
from app.engine.monitor import MemoryMonitor
from app.engine.profile_record import ProfileRecorder, record_load_failure

DEFAULT_BUDGET_S = 30.0
MIN_MEASURE_S = 5.0  # what the measurement keeps however long the load took
N_PROMPT, N_GEN, REPS = 512, 128, 3  # llama-bench's pp512 and tg128; 3 repetitions for a spread


@dataclass(frozen=True)
class BenchResult:
    model_name: str
    quant: str
    n_ctx: int
    n_gpu_layers: int
    moe_cpu_layers: int
    type_k: str
    n_threads: int
    flash_attn: bool
    n_prompt: int  # tokens the prompt speed was measured on
    n_gen: int  # tokens the generation speed was measured on, after the prompt
    prompt_tok_s: list[float]  # each repetition
    gen_tok_s: list[float]
    load_s: float
    peak_ram_bytes: int | None
    peak_vram_bytes: int | None
    predicted: Predicted | None  # the advisor's prediction for these settings, uncalibrated
    cancelled: bool
    wall_s: float
    # other programs' share of the CPUs while it measured (None: unknown); above
    # speed_calibration.BUSY_SHARE the run is kept but does not calibrate the advisor
    others_cpu_share: float | None = None

    @property
    def busy(self) -> bool:
        from app.core.advice.speed_calibration import BUSY_SHARE

        return self.others_cpu_share is not None and self.others_cpu_share > BUSY_SHARE

    @property
    def reps(self) -> int:
        return len(self.gen_tok_s)

    def median(self, which: str) -> float | None:
        values = self.gen_tok_s if which == "gen" else self.prompt_tok_s
        return statistics.median(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predicted"] = asdict(self.predicted) if self.predicted else None
        for which in ("gen", "prompt"):
            values = d[f"{which}_tok_s"]
            d[f"{which}_tok_s"] = {"median": self.median(which), "min": min(values, default=None),
                                   "max": max(values, default=None), "runs": values}  # fmt: skip
        d["depth"] = self.n_prompt
        d["reps"] = self.reps
        return d


def bench_plan(
    load: P.Load, *, quant: str, model_name: str, n_prompt: int = N_PROMPT, n_gen: int = N_GEN, reps: int = REPS,
    budget_s: float = DEFAULT_BUDGET_S, cancel: threading.Event | None = None,
    on_progress: Callable[[str, float], None] | None = None, record: bool = True,
) -> BenchResult:  # fmt: skip
    """Load ``load`` in a fresh model process, measure it, record the profile, end the process.
    ``on_progress(stage, fraction)``: stage "load" or "measure". A set ``cancel`` ends the run:
    during the load it raises ``Cancelled``; during the measurement the repetitions done so far
    are returned (``cancelled`` True; nothing is recorded unless one finished)."""
    t0 = time.perf_counter()
    cancel = cancel or threading.Event()
    recorder = ProfileRecorder(load, quant=quant, model_name=model_name)
    client = EngineClient()
    rid = client.new_request_id()
    stage = ["load"]
    done = threading.Event()

    def watch() -> None:  # a cancel kills a load (it cannot stop half-way), and stops a measurement
        while not done.is_set():
            if cancel.wait(0.05):
                if stage[0] == "load":
                    client.kill()
                else:
                    client.cancel(rid)
                return

    def progress(stage_name: str) -> Callable[[float], None]:
        return lambda f: on_progress(stage_name, f) if on_progress is not None else None

    threading.Thread(target=watch, daemon=True, name="bench-cancel").start()
    try:
        client.start()
        with MemoryMonitor(client.pid or 0) as mon:
            try:
                loaded = client.load(load, on_progress=progress("load"))
                stage[0] = "measure"
                left = max(MIN_MEASURE_S, budget_s - (time.perf_counter() - t0))
                req = P.Bench(request_id=rid, n_prompt=n_prompt, n_gen=n_gen, reps=reps, budget_s=left)
                with OthersCpu(client.pid or 0) as others:
                    out = client.bench(req, on_progress=progress("measure"))
            except BaseException as exc:
                if cancel.is_set():  # the watcher killed the process (a measurement ends without raising)
                    raise Cancelled("The benchmark was cancelled while the model loaded.") from None
                if record:  # out of memory or a crash, loading or measuring: this plan failed here
                    record_load_failure(recorder, exc)
                raise
    finally:
        done.set()
        client.close()
    peak = mon.peak
    depth = out.n_prompt + out.n_gen // 2  # the middle of the generated tokens, as the speed model reads it
    predicted = recorder.predicted(loaded.n_threads, depth) if out.gen_tok_s else None
    result = BenchResult(
        model_name=model_name, quant=quant, n_ctx=loaded.n_ctx, n_gpu_layers=load.n_gpu_layers,
        moe_cpu_layers=load.moe_cpu_layers, type_k=load.type_k.upper(), n_threads=loaded.n_threads,
        flash_attn=bool(loaded.flash_attn), n_prompt=out.n_prompt, n_gen=out.n_gen,
        prompt_tok_s=list(out.prompt_tok_s), gen_tok_s=list(out.gen_tok_s), load_s=loaded.load_s,
        peak_ram_bytes=_larger(peak.child_rss_bytes, out.peak_rss_bytes), peak_vram_bytes=peak.child_vram_bytes,
        predicted=predicted, cancelled=out.stop_reason == "cancelled", wall_s=time.perf_counter() - t0,
        others_cpu_share=others.share,
    )  # fmt: skip
    if record and result.gen_tok_s:
        recorder.benched(loaded, _measured(result), predicted)
    return result


def _measured(r: BenchResult) -> Measured:
    return Measured(outcome="ok", peak_ram_bytes=r.peak_ram_bytes, peak_vram_bytes=r.peak_vram_bytes,
                    load_s=r.load_s, gen_tok_s=r.median("gen"), prompt_tok_s=r.median("prompt"),
                    depth=r.n_prompt + r.n_gen // 2, when=utc_now(), n_prompt=r.n_prompt, n_gen=r.n_gen,
                    reps=r.reps, others_cpu_share=r.others_cpu_share)  # fmt: skip


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


__all__ = ["BenchResult", "TailorError", "bench_plan"]

"""This machine's speed model, calibrated from its own benchmark runs (issue 19).

The speed model (:mod:`app.core.advice.speed`) adds up a few terms per token — the bytes a
generated token reads on the CPU and on the GPUs, the CPU's own compute, their fixed per-layer
costs, a prompt token's work on each — from constants fitted to other machines and a RAM bandwidth
measured in a second (a shared machine's neighbours move it: ±5 % here for the read the app
measures, 34-55 GB/s for the copy it measured before). Every ``tailorlm bench`` run
keeps its measurement beside those terms at the depth it measured (``Profile.predicted``), so a
factor per term makes the model agree with this machine:

    measured seconds per token ≈ Σ factor[term] × term seconds

fitted over the runs by least squares on the relative error, pulled gently towards 1 (a term no
run exercises keeps 1), bounded to [1/10, 10]. Generation and prompt processing are fitted apart.
A factor per term needs twice as many runs as terms; with fewer, the terms of one device share one
factor. Two runs could solve two terms exactly, but the two small models a first benchmark takes
(SmolLM2, whose time goes mostly to fixed per-layer costs, and Gemma 3 270M, mostly to bytes) mix
them too alike to tell them apart through this machine's noise: solved term-wise, the 2-thread run of
``tests/bench/speed_calibration.py`` moved bytes ×1.10 and fixed costs ×0.56 and the other models'
generation error went from 12 % to 17 % (median); one factor for the CPU (×0.92) took it to 5 %.
The factors scale the terms of every model's prediction on this machine, so a bench of two small
models calibrates the speed of every other one (``tests/bench/speed_calibration.py`` measures by
how much).

Only benchmark runs count: a chat answer's speed includes sampling and a prompt of any length, so
it shows beside its plan but does not calibrate; nor does a benchmark during which other programs
took more than ``BUSY_SHARE`` of the CPUs (it measured their load). Runs of another speed model version, another
llama.cpp, another machine or an import are left out, and each setting's newest run counts once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from app.core.advice.profiles import Profile, llama_cpp_version, machine_fingerprint
from app.core.advice.speed import GEN_TERMS, PROMPT_TERMS, SPEED_MODEL_VERSION

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget
    from app.core.machine.hardware import MachineProfile

RIDGE = 1e-3  # the pull towards 1, against the squared relative errors summed over the runs: it only
# decides what the runs cannot (two terms no run tells apart share the difference)
FACTOR_MIN, FACTOR_MAX = 0.1, 10.0
MIN_SHARE = 0.02  # a term under 2 % of every run's time is not measured by them: it keeps 1
# Term-wise factors need this many runs per term; with fewer, one factor per device (module doc).
TERM_WISE_RUNS_PER_TERM = 2
MAX_RUNS = 50  # the newest runs; older ones describe a machine that may have changed since
# A run during which other programs took more than this share of the CPUs measured the machine's
# load as much as the model: kept and shown, never calibrating (as tests/bench's own BUSY_SHARE).
BUSY_SHARE = 0.25


@dataclass(frozen=True)
class SpeedCalibration:
    factors: tuple[tuple[str, float], ...]  # term → factor, the terms the runs measured
    gen_runs: int
    prompt_runs: int
    models: tuple[str, ...]  # the models benchmarked, for the reasons ("from 2 benchmarks: …")

    def to_dict(self) -> dict[str, object]:
        return {"factors": {k: round(v, 4) for k, v in self.factors}, "gen_runs": self.gen_runs,
                "prompt_runs": self.prompt_runs, "models": list(self.models)}  # fmt: skip


def usable_runs(
    profiles: Iterable[Profile], *, machine_id: str, llama_cpp: str | None = None
) -> list[Profile]:
    """The runs that may calibrate this machine (see the module doc), newest first."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for p in sorted(profiles, key=lambda p: p.measured.when, reverse=True):
        pred = p.predicted
        busy = p.measured.others_cpu_share is not None and p.measured.others_cpu_share > BUSY_SHARE
        if (p.kind != "bench" or p.source != "here" or p.machine_id != machine_id or p.measured.outcome != "ok"
                or busy or pred is None or pred.speed_model != SPEED_MODEL_VERSION
                or (llama_cpp is not None and p.llama_cpp != llama_cpp)):  # fmt: skip
            continue
        key = (p.key.file_id, p.key.quant, p.key.n_ctx, p.key.type_k, p.key.n_gpu_layers, p.key.moe_cpu_layers,
               p.key.n_threads)  # fmt: skip
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out[:MAX_RUNS]


def fit_factors(rows: Sequence[tuple[dict[str, float], float]], names: Sequence[str]) -> dict[str, float]:
    """Factors for ``names`` such that Σ factor × terms ≈ seconds, for rows of (terms, measured
    seconds); the terms no row measures are left out (they keep 1). With fewer than
    ``TERM_WISE_RUNS_PER_TERM`` rows per term, one factor per device (see the module doc)."""
    rows = [(t, s) for t, s in rows if s > 0 and sum(t.get(n, 0.0) for n in names) > 0]
    used = _measured_terms(rows, names)
    if len(rows) >= TERM_WISE_RUNS_PER_TERM * len(used):
        return _solve(rows, names, used)
    devices = {n.split("_", 1)[0] for n in used}  # "cpu", "gpu"
    pooled = [({d: sum(v for k, v in t.items() if k in names and k.startswith(d + "_")) for d in devices}, s)
              for t, s in rows]  # fmt: skip
    per_device = _solve(pooled, sorted(devices), sorted(devices))
    return {n: per_device[n.split("_", 1)[0]] for n in used if n.split("_", 1)[0] in per_device}


def _measured_terms(rows: Sequence[tuple[dict[str, float], float]], names: Sequence[str]) -> list[str]:
    """The terms some row spends at least MIN_SHARE of its time in."""
    total = [sum(t.get(n, 0.0) for n in names) for t, _ in rows]
    return [
        n
        for n in names
        if any(t.get(n, 0.0) / tot >= MIN_SHARE for (t, _), tot in zip(rows, total, strict=True))
    ]


def _solve(
    rows: Sequence[tuple[dict[str, float], float]], names: Sequence[str], used: Sequence[str]
) -> dict[str, float]:
    """Least squares on the relative errors, ridge towards 1, for the factors of ``used``."""
    import numpy as np

    if not rows or not used:
        return {}
    # relative error of row i: (Σ_j m_j a_ij) - 1 with a_ij = term_j / measured_i; ridge towards m = 1
    a = np.array([[t.get(n, 0.0) / s for n in used] for t, s in rows])
    other = np.array([sum(t.get(n, 0.0) for n in names if n not in used) / s for t, s in rows])
    lhs = a.T @ a + RIDGE * np.eye(len(used))
    rhs = a.T @ (1.0 - other) + RIDGE * np.ones(len(used))
    m = np.linalg.solve(lhs, rhs)
    return {n: float(min(FACTOR_MAX, max(FACTOR_MIN, v))) for n, v in zip(used, m, strict=True)}


def calibrate(runs: Sequence[Profile]) -> SpeedCalibration | None:
    """The factors these runs (already :func:`usable_runs`) say; None when there are none."""
    gen: list[tuple[dict[str, float], float]] = []
    prompt: list[tuple[dict[str, float], float]] = []
    for p in runs:
        assert p.predicted is not None
        terms = p.predicted.terms()
        if p.measured.gen_tok_s:
            gen.append((terms, 1.0 / p.measured.gen_tok_s))
        if p.measured.prompt_tok_s:
            prompt.append((terms, 1.0 / p.measured.prompt_tok_s))
    factors = {**fit_factors(gen, GEN_TERMS), **fit_factors(prompt, PROMPT_TERMS)}
    if not factors:
        return None
    models = tuple(dict.fromkeys(p.model_name for p in runs))
    return SpeedCalibration(tuple(sorted(factors.items())), len(gen), len(prompt), models)


def calibration_here(
    profiles: Iterable[Profile], *, machine_id: str, llama_cpp: str | None = None
) -> SpeedCalibration | None:
    """This machine's calibration from the profiles (any order, any machine), or None."""
    return calibrate(usable_runs(profiles, machine_id=machine_id, llama_cpp=llama_cpp))


def calibration_for(machine: MachineProfile) -> SpeedCalibration | None:
    """This machine's calibration from its benchmark runs with today's llama.cpp; None without runs.
    A what-if of other RAM or VRAM sizes keeps it (the runs measured this machine's speed); one of
    another bandwidth does not (the factors scale the bandwidth's terms). A store that cannot be
    read gives no runs (logged): advice without calibration."""
    if any(o.startswith(("ram_bandwidth", "gpu_bandwidth")) for o in machine.overrides):
        return None
    from app.core.advice.profiles_db import ProfileStore

    if machine.overrides:  # the fingerprint is of the machine as detected, not as imagined
        from app.core.machine.hardware import detect_machine

        machine = detect_machine(measure_bandwidth=False)

    machine_id, _ = machine_fingerprint(machine)
    with ProfileStore() as store:
        runs = store.benchmarks(machine_id=machine_id)
    # the advisor plans with a thread per physical core: runs with another count calibrate only
    # when there are none with that one (the fixed costs per layer depend on the threads)
    cores = machine.cpu.physical_cores
    runs = [r for r in runs if r.key.n_threads == cores] or runs
    return calibration_here(runs, machine_id=machine_id, llama_cpp=llama_cpp_version())


def calibrated(budget: Budget, calibration: SpeedCalibration | None) -> Budget:
    """``budget`` whose speed predictions use ``calibration`` (None: the speed model's own)."""
    return replace(budget, speed_calibration=calibration.factors if calibration else ())

"""The CPU's share of the speed model (:mod:`app.core.advice.speed`): what a generated token and a
prompt token cost on a CPU, as columns of work (bytes, weights and rows by type family, layers,
recurrent state) times a cost each, fitted to llama-bench on this repo's CPU at 1 and 2 threads
(``tests/bench/fit_cpu_speed.py``, which solves for the costs from these same columns)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.advice.speed import DeviceWork
    from app.core.model.info import ModelInfo

# CPU: a generated token's seconds are a sum of columns (``cpu_generation_columns``), each times its
# cost here, fitted to speed_records.json (llama-bench at 1 and 2 threads on 2 Zen 4 cores;
# tests/bench/fit_cpu_speed.py fits them and prints each record's error):
#   reading:  bytes ÷ min(bandwidth × CPU_READ_EFFICIENCY, threads × CPU_CORE_BANDWIDTH) — the
#             read bandwidth the app measures (app/core/machine/bandwidth.py) with every core
#             reading; a single core cannot keep that many loads in flight, so it reads less;
#   compute:  the dot products' own instructions, per thread: per weight by type family (unpacking
#             a Q4_1 or a K-quant) and per row (each row's call, its sum, its store: short rows, as
#             Gemma-3-270M's 640-wide output matrix of 262,144 rows, cost more than their bytes);
#   fixed:    per layer, its small ops (norms, RoPE, softmax: split over the threads) and, with more
#             than one thread, the barriers between them; a recurrent layer (hybrids' short
#             convolution, Mamba-2, Gated DeltaNet: ``ModelInfo.recurrent_layers``) its state update,
#             per element of its state by kind.
# The fit (speed_records.json, 2026-12-05, read probe median 52 GB/s): every core reading streams
# 72 % of the probe's figure, one core 28 GB/s; K-quants' and Q8_0's dot products cost ~6 core-ps a
# weight beside their bytes, Q4_1's unpacking 46, and a row of Q8_0, Q5_0 or Q4_1 7-38 core-ns (a
# 640-wide Q8_0 row reads 680 bytes: ~18 ns at that bandwidth); a layer's small ops 52 core-µs
# and, with two threads, 38 µs of barriers; a recurrent layer 76 µs of barriers and its state
# update: ~1 ns an element for Gated DeltaNet, 0.4 for Mamba-2's scan (per element of the conv
# window for LFM2's short convolution, whose state is tiny).
CPU_READ_EFFICIENCY = 0.725
CPU_CORE_BANDWIDTH = 27.8e9
CPU_GEN_COSTS: dict[str, float] = {
    "byte/bandwidth": 1 / CPU_READ_EFFICIENCY,  # × bytes ÷ the measured bandwidth
    "byte/core": 1 / CPU_CORE_BANDWIDTH,  # × bytes ÷ threads, when that binds
    "weight:k": 6.3e-12, "weight:block": 6.2e-12, "weight:q5": 0.0, "weight:vec": 46e-12,  # core-s a weight
    "row:k": 0.0, "row:block": 12.6e-9, "row:q5": 37.7e-9, "row:vec": 7.3e-9,  # core-s a row
    "layer": 52e-6,  # core-s per attention layer
    "layer sync": 38e-6,  # s per attention layer at 2 threads (see ``barriers``)
    "state:shortconv": 15.7e-9, "state:mamba2": 0.37e-9, "state:gated_delta_net": 0.96e-9,  # core-s an element
    "recurrent sync": 76e-6,  # s per recurrent layer at 2 threads
}  # fmt: skip
# Which term of the calibration (GEN_TERMS) each column's time counts in.
CPU_GEN_TERM = {"byte": "cpu_bytes", "weight": "cpu_compute", "row": "cpu_compute"}
# CPU: a prompt token's core-seconds are a sum of columns (``cpu_prompt_columns``), each times its
# cost here, divided by the threads × CPU_ISA_FACTOR (× CPU_SOLO_SPEEDUP for a single thread), fitted
# to speed_records.json's pp512 (AMD EPYC Zen 4, AVX-512; fit_cpu_speed.py):
#   matmul:   FLOPs by kernel family (see ``prompt_family``), at a per-core rate: ggml's own K-quant
#             dot products (ggml-cpu/quants.c) are the fastest there, the repacked GEMM
#             (ggml-cpu/repack.cpp) next, then the block quants llamafile's 256-bit tinyBLAS takes
#             (Q8_0, Q4_0, floats: ggml-cpu/llamafile/sgemm.cpp), Q5_0 (the same kernel, with its
#             fifth bit to unpack), and slowest the block quants it does not take (Q4_1, Q5_1:
#             ggml's row-by-row dot product against activations quantized to Q8_1);
#   per layer: attention, norms, RoPE, quantizing the activations — what makes tiny models like
#             SmolLM2 slower than their FLOPs; a recurrent layer's per layer, plus per element of its
#             state by kind (Gated DeltaNet's chunked delta rule costs far more than Mamba-2's scan).
CPU_PROMPT_COSTS: dict[str, float] = {
    "flop:k": 1 / 193e9, "flop:repacked": 1 / 124e9, "flop:block": 1 / 109e9, "flop:q5": 1 / 85e9,
    "flop:vec": 1 / 43e9,
    "layer": 41e-6,
    "recurrent layer": 0.0,
    "state:shortconv": 0.0, "state:mamba2": 0.21e-9, "state:gated_delta_net": 0.50e-9,
}  # fmt: skip
# One thread runs without waiting for others and has a core's caches and memory to itself: its work
# goes this much faster than a thread's share of two (same fit).
CPU_SOLO_SPEEDUP = 1.08
# The block quants llamafile's sgemm has no kernel for (its switch over the weight type); Q1_0 and
# Q2_0 take the same path, with no record of their own.
VEC_DOT_TYPES = ("Q4_1", "Q5_1", "Q1_0", "Q2_0")
# The vector ISA's width against AVX-512's: AVX2 and NEON do half the work per instruction. No
# record checks these (this repo's CPU machine has AVX-512).
CPU_ISA_FACTOR = {"AVX512": 1.0, "AVX2": 0.5, "NEON": 0.5}
CPU_ISA_FACTOR_FALLBACK = 0.25  # no SIMD llama.cpp uses
CPU_THREADS_FALLBACK = 4  # the caller does not know the cores: a typical laptop's performance cores


def cpu_isa_factor(isa: tuple[str, ...]) -> float:
    flags = {f.upper() for f in isa}
    if any(f.startswith("AVX512") for f in flags):
        return CPU_ISA_FACTOR["AVX512"]
    if "AVX2" in flags:
        return CPU_ISA_FACTOR["AVX2"]
    if "NEON" in flags:
        return CPU_ISA_FACTOR["NEON"]
    return CPU_ISA_FACTOR_FALLBACK


def _state_kind(model: ModelInfo) -> str:
    """The CPU_*_COSTS key of a recurrent layer's state (Mamba-1's scan is Mamba-2's, without groups)."""
    kind = model.recurrent.kind if model.recurrent else "mamba2"
    return "state:" + ("mamba2" if kind == "mamba" else kind)


def barriers(threads: int) -> float:
    """The cost of the threads' barriers against two threads': none for one, log2(threads) after —
    each barrier waits for the last of the threads to arrive. Two points check it: 2 threads here
    (speed_records.json) and the 16 of the H200 host (h200-moe.json: a layer whose experts run on the
    CPU costs ~0.2 ms a token there, of which the experts' reading is a small part)."""
    return math.log2(threads) if threads > 1 else 0.0


def cpu_generation_columns(
    w: DeviceWork, model: ModelInfo, bandwidth: float, threads: int
) -> dict[str, float]:
    """A generated token's work on a CPU as the columns CPU_GEN_COSTS prices: its seconds are
    Σ column × cost. ``bandwidth``: the device's measured RAM bandwidth; ``threads``: llama.cpp's."""
    attention = w.layers - w.recurrent_layers
    many = barriers(threads)
    cols: dict[str, float] = {"layer": attention / threads, "layer sync": attention * many}  # see cpu_layer_s
    read = sum(w.read_bytes.values())
    if bandwidth and bandwidth / CPU_GEN_COSTS["byte/bandwidth"] <= threads / CPU_GEN_COSTS["byte/core"]:
        cols["byte/bandwidth"] = read / bandwidth
    else:
        cols["byte/core"] = read / threads
    for family, n in w.weights.items():
        cols[f"weight:{family}"] = n / threads
    for family, n in w.rows.items():
        cols[f"row:{family}"] = n / threads
    if w.recurrent_layers:
        cols[_state_kind(model)] = (
            w.recurrent_layers * (model.conv_state_elements + model.ssm_state_elements) / threads
        )
        cols["recurrent sync"] = w.recurrent_layers * many
    return cols


def cpu_layer_s(threads: int) -> float:
    """One attention layer's fixed seconds per generated token: its "layer" and "layer sync" columns
    priced (what a GPU layer whose experts run on the CPU costs there as well)."""
    return CPU_GEN_COSTS["layer"] / threads + CPU_GEN_COSTS["layer sync"] * barriers(threads)


def cpu_prompt_columns(w: DeviceWork, model: ModelInfo) -> dict[str, float]:
    """A prompt token's work on a CPU as the columns CPU_PROMPT_COSTS prices, in core-seconds at
    AVX-512 (``cpu_scale`` divides them among the threads)."""
    cols = {f"flop:{family}": n for family, n in w.flops.items()}
    cols["layer"] = w.layers - w.recurrent_layers
    if w.recurrent_layers:
        cols["recurrent layer"] = w.recurrent_layers
        cols[_state_kind(model)] = w.recurrent_layers * (model.conv_state_elements + model.ssm_state_elements)
    return cols


def priced(cols: dict[str, float], costs: dict[str, float]) -> float:
    return sum(n * costs.get(k, 0.0) for k, n in cols.items())


def cpu_scale(threads: int, isa: tuple[str, ...]) -> float:
    """How many cores' worth of a prompt's work ``threads`` threads do at once."""
    return threads * cpu_isa_factor(isa) * (CPU_SOLO_SPEEDUP if threads == 1 else 1.0)


def cpu_generation_s(
    w: DeviceWork, model: ModelInfo, bandwidth: float, threads: int
) -> tuple[float, float, float]:
    """A CPU's (bytes, compute, fixed) seconds of one generated token."""
    got = {"cpu_bytes": 0.0, "cpu_compute": 0.0, "cpu_fixed": 0.0}
    for k, n in cpu_generation_columns(w, model, bandwidth, threads).items():
        got[CPU_GEN_TERM.get(k.split(":")[0].split("/")[0], "cpu_fixed")] += n * CPU_GEN_COSTS[k]
    return got["cpu_bytes"], got["cpu_compute"], got["cpu_fixed"]


def cpu_prompt_layers_s(w: DeviceWork, model: ModelInfo, scale: float) -> float:
    """A prompt token's time on the CPU beside the matmuls, at ``scale`` cores' worth of work."""
    cols = {k: v for k, v in cpu_prompt_columns(w, model).items() if not k.startswith("flop:")}
    return priced(cols, CPU_PROMPT_COSTS) / scale

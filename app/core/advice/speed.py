"""Rough speed expectations: generation is memory-bandwidth bound, prompt processing compute bound.

tok/s ≈ effective bandwidth / bytes read per token, summed over the devices the layers live on
(shared/reference/llama-cpp-facts.md "Speed": Llama-3-8B Q4_K_M reaches 45-80 % of the spec
bandwidth — RTX 4090 64 %, RTX 3070 80 %, M1 Max 44 %). Bytes per token are the weights the
token passes through (not ``token_embd``, of which one row is read; for MoE only the routed
experts' share) plus the KV cache read at half fill. Tiny models on few cores are bound by
llama.cpp's per-operation overhead instead, hence a per-layer floor.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.advice.estimate import MemoryEstimate
from app.core.advice.placement import is_output_tensor, layer_devices
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of

GPU_BANDWIDTH_EFFICIENCY = 0.65  # facts: 64 % on an RTX 4090, 45-80 % across cards
# Our bandwidth probe measures a numpy copy, a fair stand-in for llama.cpp's streaming reads;
# llama.cpp's decode on all cores reaches about 80 % of it (our SmolLM2/Gemma runs on 2 cores).
CPU_BANDWIDTH_EFFICIENCY = 0.8
# Per-layer fixed cost of one decode step (graph build, thread barriers between ~35 ops per
# layer): measured ~0.7 ms per layer on 2 cores for SmolLM2-135M whose weights alone would
# allow 100+ tok/s; far smaller on a GPU (kernel launches, CUDA graphs).
CPU_LAYER_OVERHEAD_S = 0.7e-3
GPU_LAYER_OVERHEAD_S = 0.02e-3
# Prompt processing vs generation (measured: 5x on 2 CPU cores for SmolLM2; 35x on an H100 for
# an 8B Q4_K_M, 9291 vs 261.6 tok/s in facts). A rough ratio; shown as such.
CPU_PROMPT_FACTOR = 5.0
GPU_PROMPT_FACTOR = 30.0
KV_AVERAGE_FILL = 0.5


@dataclass(frozen=True)
class SpeedEstimate:
    tok_s: float  # generation
    prompt_tok_s: float
    bound: str  # "GPU bandwidth", "CPU bandwidth", "CPU overhead"
    bytes_per_token: int


def _read_bytes(model: ModelInfo, t: TensorInfo) -> int:
    if t.name == "token_embd.weight":
        return 0
    if "_exps" in t.name and model.n_expert > 1:
        return t.n_bytes * max(model.n_expert_used, 1) // model.n_expert
    return t.n_bytes


def predict_speed(
    model: ModelInfo,
    tensors: tuple[TensorInfo, ...],
    est: MemoryEstimate,
    *,
    cpu_bandwidth_bytes_s: float,
    gpu_bandwidth_bytes_s: dict[str, float],
) -> SpeedEstimate:
    devices = layer_devices(model.n_layer, est.settings)  # the estimator's own placement
    cpu_bytes = gpu_bytes = 0
    for t in tensors:
        li = layer_of(t.name)
        if li is not None and li < model.n_layer:
            dev = devices[li]
        elif is_output_tensor(t.name) or (t.name == "token_embd.weight" and model.tied_embeddings):
            dev = devices[model.n_layer]  # a tied embedding is the output matrix
        else:
            dev = "CPU"
        # a tied embedding is read in full every token (the output matmul), not one row
        n = t.n_bytes if t.name == "token_embd.weight" and model.tied_embeddings else _read_bytes(model, t)
        if dev == "CPU":
            cpu_bytes += n
        else:
            gpu_bytes += n
    cpu_bytes += int(est.device("CPU").kv_bytes * KV_AVERAGE_FILL)
    gpu_bytes += int(sum(d.kv_bytes for d in est.devices if d.device != "CPU") * KV_AVERAGE_FILL)

    gpu_bw = min(gpu_bandwidth_bytes_s.values()) if gpu_bandwidth_bytes_s else 0.0
    n_gpu_repeating = sum(d != "CPU" for d in devices[: model.n_layer])
    n_cpu_layers = model.n_layer - n_gpu_repeating
    t_cpu_bw = cpu_bytes / (cpu_bandwidth_bytes_s * CPU_BANDWIDTH_EFFICIENCY) if cpu_bytes else 0.0
    t_cpu_over = n_cpu_layers * CPU_LAYER_OVERHEAD_S
    t_cpu = max(t_cpu_bw, t_cpu_over)
    t_gpu = (gpu_bytes / (gpu_bw * GPU_BANDWIDTH_EFFICIENCY) if gpu_bytes and gpu_bw else 0.0) + (
        n_gpu_repeating * GPU_LAYER_OVERHEAD_S
    )
    total = t_cpu + t_gpu
    if t_gpu >= t_cpu:
        bound = "GPU bandwidth"
    else:
        bound = "CPU bandwidth" if t_cpu_bw >= t_cpu_over else "CPU overhead"
    tok_s = 1.0 / total if total > 0 else 0.0
    prompt_factor = GPU_PROMPT_FACTOR if n_cpu_layers == 0 and n_gpu_repeating else CPU_PROMPT_FACTOR
    return SpeedEstimate(tok_s, tok_s * prompt_factor, bound, cpu_bytes + gpu_bytes)


def shown_tok_s(tok_s: float) -> float:
    """A speed rounded as it is shown: one decimal below 10 tokens/s, whole numbers above. Every
    comparison with a threshold the user reads ("below a comfortable 5") uses this too, so a
    speed shown as "5.0" is never called slower than 5."""
    return round(tok_s, 1) if round(tok_s, 1) < 10 else float(round(tok_s))


def format_tok_s(tok_s: float) -> str:
    """A speed as every front end shows it — the reasons, the plan table, the catalog overview:
    "0.4", "9.5", "12", "240", and "<0.1" for what would round to nothing. One helper, so the
    words and the table never disagree."""
    shown = shown_tok_s(tok_s)
    if shown < 0.1:
        return "<0.1"
    return f"{shown:.1f}" if shown < 10 else f"{shown:,.0f}"

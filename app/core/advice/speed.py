"""Speed expectations: tokens per second when writing (generation) and when reading the prompt.

Generation reads, for every token, the weights the token passes through, and the layers run one
after the other, so the devices' times add up:

    seconds per token = Σ over devices [ reading + computing + fixed costs there ]

Bytes read are the weights (not ``token_embd``, of which one row is read, unless it doubles as the
output matrix; for MoE only ``n_expert_used`` of ``n_expert`` routed experts, shared experts in
full) plus the KV cache up to the current depth. On a GPU they stream at a share of its bandwidth
that depends on the type family, plus a fixed cost per layer (kernel launches) and per token. On a
CPU a few cores may not keep up with the memory: the bytes take the measured bandwidth (or what
the threads can pull, with few threads), the dot products' instructions take their time per
weight and per row by type family, divided among the threads, and each layer's small ops and
barriers add a fixed cost — so the same file runs slower per byte on fewer threads, and a model
of short rows slower than its bytes say.

Prompt processing is compute bound: a token costs 2 FLOPs per weight it multiplies (MoE: the used
experts), at the device's throughput — on a CPU threads × a per-core rate by kernel family, scaled
by the vector ISA, plus a per-layer cost for the rest of the layer (a recurrent layer's by the size
of its state); on a GPU its FP16 tensor throughput (a table by name) × the share llama.cpp reaches
— never faster than reading every weight once per ubatch.

The constants are fitted to the benchmark records (``tests/bench/results/speed_records.json``: this
repo's 2-core CPU at 1 and 2 threads, by ``tests/bench/fit_cpu_speed.py``, for the CPU's costs in
:mod:`app.core.advice.speed_cpu`; ``tests/gpu/results``: the GPU proofs); ``tests/bench/speed_model_check.py``
compares every recorded run with its prediction, and the README shows the errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.advice.buffers import OP_OFFLOAD_MIN_BATCH, kv_layer_bytes
from app.core.advice.estimate import MemoryEstimate
from app.core.advice.placement import is_output_tensor, is_row_lookup, layer_devices, tensor_device
from app.core.advice.rpc_link import link_cost
from app.core.advice.run_settings import repack_types
from app.core.advice.speed_cpu import (
    CPU_PROMPT_COSTS,
    CPU_THREADS_FALLBACK,
    VEC_DOT_TYPES,
    cpu_generation_s,
    cpu_layer_s,
    cpu_prompt_columns,
    cpu_prompt_layers_s,
    cpu_scale,
    priced,
)
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of

# --- generation --------------------------------------------------------------------------------
# GPU: the share of the bandwidth llama.cpp's decode kernels reach, by type family (see
# ``gen_family``), fitted to the all-GPU runs on the H100 and the H200 (tests/gpu/results/h100*.json,
# h200-speed.json; CUDA's mmvq kernels): Q8_0 streams at 86 % of the spec, Q4_K_M's K-quants at
# 66 % — unpacking a 256-weight super-block costs more than the bytes it saves (facts: 45-80 % for
# Llama-3-8B Q4_K_M across cards); no GPU record has Q5_0, Q4_1 or Q5_1, which take Q8_0's.
GPU_BANDWIDTH_EFFICIENCY = {"k": 0.66, "block": 0.86, "q5": 0.86, "vec": 0.86}
# GPU: 13 µs a layer (the small ops' kernel launches), plus 1.4 ms a token for the decode call itself
# (graph launch and sync, the logits to the host, the engine picking a token): what keeps a 1B model
# at ~450 tok/s on an H200 whose bandwidth would allow thousands.
GPU_LAYER_S = 13e-6
GPU_TOKEN_S = 1.4e-3
# A layer that keeps its experts in RAM but the rest on the GPU (``moe_cpu_layers``) hands its
# activations to the CPU and the experts' output back every token: two waits for the GPU's queue
# to drain and two small copies (ggml-backend.cpp splits), besides the CPU's own per-layer cost.
MOE_SPLIT_HOP_S = 20e-6
# A whole MoE layer on the CPU (layer split) costs this much more per token than a dense one: the
# router's softmax and top-k, the gathers and the weighted sum of the experts' outputs are a dozen
# more small ops, each a barrier for every thread. Fitted to the H200 host's 16 threads
# (tests/gpu/results/h200-moe.json: Qwen3-30B-A3B with 12 and 33 layers in RAM, both 0.35 ms).
CPU_MOE_LAYER_S = 0.35e-3
# KV read per token when the caller names no depth: half the context, the average over a
# conversation that fills it.
KV_AVERAGE_FILL = 0.5

# --- prompt processing -------------------------------------------------------------------------
PROMPT_TOKENS = 512  # what the prompt speed is quoted for: one full ubatch into an empty cache
# Dense FP16 tensor-core throughput by GPU name (NVIDIA data sheets, without sparsity), first match
# wins. llama.cpp's matmuls reach GPU_PROMPT_EFFICIENCY of it at a 512-token ubatch, and the rest of
# a layer (attention, norms) costs GPU_PROMPT_LAYER_S per token: fitted to the H200's pp512
# (h200-speed.json; Gemma-3-1B to Llama-3.1-8B); the H100's 9,291 tok/s for an 8B Q4_K_M (the
# earlier model's reference) comes out 10 % above.
GPU_FP16_FLOPS = (
    ("H200 NVL", 835e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100 NVL", 835e12),
    ("H100", 989e12), ("A100", 312e12), ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("A10", 125e12), ("T4", 65e12), ("V100", 125e12),
)  # fmt: skip
GPU_PROMPT_EFFICIENCY = 0.21
GPU_PROMPT_LAYER_S = 0.96e-6
# A GPU not in the table: FLOP/s per byte/s of its bandwidth, about the ratio of the cards above
# (A100 200, RTX 4090 164, T4 203); Apple's GPUs have far less compute per byte (M2 Max: 13.6
# TFLOPS FP32 at 400 GB/s).
GPU_FLOPS_PER_BANDWIDTH = {"metal": 35.0}
GPU_FLOPS_PER_BANDWIDTH_FALLBACK = 150.0
# With a discrete GPU, a big batch's matmuls of weights in RAM run on the GPU, each weight copied
# over the bus first, all experts of a stacked tensor included (op offload, ggml-backend.cpp;
# GGML_OP_OFFLOAD_MIN_BATCH 32), while attention and the small ops of CPU layers stay on the CPU.
# The copies reach HOST_COPY_EFFICIENCY of the link's one-way rate (from mapped, pageable memory):
# fitted to the H200's pp512 with Qwen3-30B-A3B's experts in RAM (tests/gpu/results/h200-moe.json,
# PCIe 5.0 x16: ~45 GB/s of 63). A link NVML does not report is taken as PCIe 4.0 x16, a desktop's
# (most laptop GPUs have 8 lanes: half that).
HOST_COPY_EFFICIENCY = 0.71
DEFAULT_HOST_LINK_BYTES_S = 16 * 1.969e9


# Raised whenever a constant or a term's meaning changes: recorded terms of another version are not
# comparable, and the calibration leaves them out.
SPEED_MODEL_VERSION = 3
# The terms a prediction adds up, each a time the calibration (speed_calibration.py) may scale for
# one machine: a generated token's bytes, compute (CPU) and fixed costs on the CPU and on the GPUs,
# and a prompt token's work on each.
GEN_TERMS = ("cpu_bytes", "cpu_compute", "cpu_fixed", "gpu_bytes", "gpu_fixed")
PROMPT_TERMS = ("cpu_prompt", "gpu_prompt")


@dataclass(frozen=True)
class SpeedEstimate:
    tok_s: float  # generation
    prompt_tok_s: float
    bound: str  # "GPU bandwidth", "CPU bandwidth", "CPU compute", "CPU overhead"
    bytes_per_token: int
    # Seconds per token of each term (GEN_TERMS, PROMPT_TERMS) before any calibration: what a
    # measured run is compared with to calibrate this machine.
    terms: tuple[tuple[str, float], ...] = ()
    calibrated: bool = False  # this machine's calibration scaled the terms
    link_bytes_per_token: int = 0  # to and from workers, per generated token (rpc_link.py)
    link_s_per_token: float = 0.0  # the time that adds (in cpu_fixed)


@dataclass
class DeviceWork:
    """What one device does: bytes one generated token reads, by ``gen_family``, and the weights and
    rows of the matrices it multiplies; FLOPs of one prompt token, by ``prompt_family``; its
    repeating layers; the weights it holds (read once per ubatch)."""

    read_bytes: dict[str, int] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)  # by gen_family, used experts only
    rows: dict[str, float] = field(default_factory=dict)  # by gen_family: dot products a token takes
    flops: dict[str, float] = field(default_factory=dict)
    layers: int = 0
    weight_bytes: int = 0
    expert_layers: int = 0  # layers of another device whose routed experts run here
    moe_layers: int = 0  # of ``layers``: those with routed experts
    recurrent_layers: int = 0  # of ``layers``: those with a recurrent state instead of a KV cache
    matmul_bytes: int = 0  # weights a prompt multiplies (what op offload copies to a GPU)


def gen_family(type_name: str) -> str:
    """``"vec"`` for ``VEC_DOT_TYPES`` (Q4_1, Q5_1, Q1_0, Q2_0), ``"q5"`` for Q5_0, ``"k"`` for K-quants and the
    codebook quants (IQ*, TQ*), ``"block"`` for the other 32-weight block quants (Q4_0, Q8_0, MXFP4)
    and floats."""
    if type_name in VEC_DOT_TYPES:
        return "vec"
    if type_name == "Q5_0":
        return "q5"
    if type_name.endswith("_K") or type_name.startswith(("IQ", "TQ")):
        return "k"
    return "block"


def prompt_family(t: TensorInfo, repackable: frozenset[str]) -> str:
    """The CPU kernel that multiplies a prompt by ``t``: ``"repacked"`` (the interleaved GEMM the CPU
    backend repacks these into, when its rows come in eights, as the estimator decides), ``"k"``
    (the other K-quants), ``"vec"`` (``VEC_DOT_TYPES``), ``"q5"`` (Q5_0), ``"block"`` (everything
    else)."""
    if t.type_name in repackable and len(t.shape) >= 2 and t.shape[1] % 8 == 0:
        return "repacked"
    family = gen_family(t.type_name)
    return family if family in ("k", "vec", "q5") else "block"


def _add(d: dict[str, Any], key: str, n: float) -> None:
    d[key] = d.get(key, 0) + n


def _used_share(model: ModelInfo, t: TensorInfo) -> float:
    """The share of a tensor one token uses: n_expert_used of n_expert for routed experts."""
    if "_exps" in t.name and model.n_expert > 1:
        return max(model.n_expert_used, 1) / model.n_expert
    return 1.0


def device_work(
    model: ModelInfo, tensors: tuple[TensorInfo, ...], est: MemoryEstimate, depth_tokens: int
) -> dict[str, DeviceWork]:
    """Per device ("CPU", "GPU0", …): the work of a token generated at ``depth_tokens`` of context
    and of a token of a ``PROMPT_TOKENS``-token prompt."""
    s = est.settings
    devices = layer_devices(model.n_layer, s)  # the estimator's own placement
    repackable = frozenset() if s.discrete_gpu else repack_types(s.cpu_isa)
    work: dict[str, DeviceWork] = {}
    first_mtp = model.n_layer - model.n_layer_mtp
    split: set[int] = set()  # GPU layers whose routed experts stay in RAM
    moe: set[int] = set()  # layers with routed experts
    for t in tensors:
        li = layer_of(t.name)
        if li is not None and li < model.n_layer:
            if "_exps" in t.name:
                moe.add(li)
            if devices[li] != "CPU" and tensor_device(t.name, li, devices, s) == "CPU":
                split.add(li)
        if li is not None and first_mtp <= li < model.n_layer:
            continue  # a draft head (MTP) block is not loaded (estimate._placed)
        tied_output = t.name == "token_embd.weight" and model.tied_embeddings
        if li is not None and li < model.n_layer:
            dev = tensor_device(t.name, li, devices, s)
        elif is_output_tensor(t.name) or tied_output:
            dev = devices[model.n_layer]  # a tied embedding is the output matrix
        else:
            dev = "CPU"
        w = work.setdefault(dev, DeviceWork())
        if is_row_lookup(t.name, model.tied_embeddings):
            continue  # one row per token (the input embedding, Gemma's per-layer embeddings)
        share = _used_share(model, t)
        family = gen_family(t.type_name)
        _add(w.read_bytes, family, int(t.n_bytes * share))
        w.weight_bytes += t.n_bytes
        if len(t.shape) >= 2:
            _add(w.weights, family, t.n_elements * share)
            _add(w.rows, family, t.n_elements // max(t.shape[0], 1) * share)
        if len(t.shape) >= 2 and not (is_output_tensor(t.name) or tied_output):  # output: last token only
            w.matmul_bytes += t.n_bytes
            _add(
                w.flops,
                prompt_family(t, repackable if dev == "CPU" else frozenset()),
                2 * t.n_elements * share,
            )
    if split:
        work.setdefault("CPU", DeviceWork()).expert_layers = len(split)
    for li in moe:
        work.setdefault(devices[li], DeviceWork()).moe_layers += 1
    kv_family = gen_family(s.type_k)
    window = model.sliding_window if model.has_swa else depth_tokens
    for il in range(model.n_layer):
        w = work.setdefault(devices[il], DeviceWork())
        w.layers += 1
        w.recurrent_layers += model.is_recurrent(il)
        _add(w.read_bytes, kv_family, kv_layer_bytes(model, s, il, depth_tokens, min(depth_tokens, window)))
    return work


def _gpu_flops(name: str, bandwidth_bytes_s: float, backend: str) -> float:
    for key, flops in GPU_FP16_FLOPS:
        if key.lower() in name.lower():
            return flops
    return bandwidth_bytes_s * GPU_FLOPS_PER_BANDWIDTH.get(backend, GPU_FLOPS_PER_BANDWIDTH_FALLBACK)


def _generation_s(
    w: DeviceWork, bandwidth: float, efficiency: dict[str, float], layer_s: float
) -> tuple[float, float]:
    """A GPU's (bandwidth time, fixed time) of one token."""
    t_bw = sum(n / (bandwidth * efficiency[f]) for f, n in w.read_bytes.items()) if bandwidth else 0.0
    return t_bw, w.layers * layer_s


def predict_speed(
    model: ModelInfo,
    tensors: tuple[TensorInfo, ...],
    est: MemoryEstimate,
    *,
    cpu_bandwidth_bytes_s: float,
    gpu_bandwidth_bytes_s: dict[str, float],
    cpu_threads: int | None = None,
    gpu_names: dict[str, str] | None = None,
    depth_tokens: int | None = None,
    host_link_bytes_s: float | None = None,
    calibration: Mapping[str, float] | None = None,
    rpc_links: dict[str, tuple[float, float]] | None = None,
) -> SpeedEstimate:
    """Generation and prompt speed of the plan ``est``. ``cpu_threads``: the threads llama.cpp runs
    (the physical cores); ``gpu_names``: the GPUs' names, for their compute; ``depth_tokens``: the
    tokens already in the context when generating (default: half the context);
    ``host_link_bytes_s``: the first GPU's bus to the host, one way (default PCIe 4.0 x16);
    ``calibration``: this machine's factor per term (:mod:`app.core.advice.speed_calibration`);
    ``rpc_links``: each worker device's (round trip s, bytes/s)."""
    s = est.settings
    depth = depth_tokens if depth_tokens is not None else int(s.n_ctx * KV_AVERAGE_FILL)
    work = device_work(model, tensors, est, depth)
    threads = cpu_threads or CPU_THREADS_FALLBACK
    gen = {"CPU": (0.0, 0.0)}
    cpu_compute = 0.0
    prompt = {"cpu_prompt": 0.0, "gpu_prompt": 0.0}
    gpu_flops = {
        dev: _gpu_flops((gpu_names or {}).get(dev, ""), bw, s.gpu_backend) * GPU_PROMPT_EFFICIENCY
        for dev, bw in gpu_bandwidth_bytes_s.items()
    }
    # Op offload: a discrete GPU multiplies a prompt's batch by the weights in RAM (buffers.py).
    offload_to = "GPU0" if s.discrete_gpu and s.n_ubatch >= OP_OFFLOAD_MIN_BATCH else None
    for dev, w in work.items():
        if dev == "CPU" or s.is_rpc(dev):  # a worker's device is a CPU too (its bandwidth: ours)
            bw = (
                cpu_bandwidth_bytes_s
                if dev == "CPU"
                else gpu_bandwidth_bytes_s.get(dev, cpu_bandwidth_bytes_s)
            )
            t_bw, t_compute, t_fixed = cpu_generation_s(w, model, bw, threads)
            cpu_compute += t_compute
            hops = w.expert_layers * (cpu_layer_s(threads) + 2 * MOE_SPLIT_HOP_S)
            gen[dev] = (t_bw, t_fixed + hops + w.moe_layers * CPU_MOE_LAYER_S)
            if dev == "CPU" and offload_to and gpu_flops.get(offload_to):
                # the GPU multiplies (after the copy); attention and the small ops stay on the CPU
                link = (host_link_bytes_s or DEFAULT_HOST_LINK_BYTES_S) * HOST_COPY_EFFICIENCY
                copy_s = w.matmul_bytes / link / s.n_ubatch
                rest_s = cpu_prompt_layers_s(w, model, cpu_scale(threads, s.cpu_isa))
                compute_s = copy_s + sum(w.flops.values()) / gpu_flops[offload_to] + rest_s
            else:
                compute_s = priced(cpu_prompt_columns(w, model), CPU_PROMPT_COSTS) / cpu_scale(
                    threads, s.cpu_isa
                )
        else:
            bw = gpu_bandwidth_bytes_s.get(dev, 0.0)
            gen[dev] = _generation_s(w, bw, GPU_BANDWIDTH_EFFICIENCY, GPU_LAYER_S)
            flops = gpu_flops.get(dev, 0.0)
            compute_s = sum(w.flops.values()) / flops + w.layers * GPU_PROMPT_LAYER_S if flops else 0.0
        # a ubatch reads every weight of the device once, all experts included
        prompt["cpu_prompt" if dev == "CPU" or s.is_rpc(dev) else "gpu_prompt"] += max(
            compute_s, w.weight_bytes / bw / s.n_ubatch if bw else 0.0
        )
    if any(dev != "CPU" and not s.is_rpc(dev) and w.layers for dev, w in work.items()):
        gen["GPU token"] = (0.0, GPU_TOKEN_S)
    t_cpu_bw, t_cpu_fixed = gen.pop("CPU")
    for t_bw, t_fixed in [gen.pop(d) for d in list(gen) if s.is_rpc(d)]:  # workers' CPUs
        t_cpu_bw, t_cpu_fixed = t_cpu_bw + t_bw, t_cpu_fixed + t_fixed
    net = (
        link_cost(model, s, layer_devices(model.n_layer, s), depth, rpc_links or {})
        if s.rpc_devices
        else None
    )
    if net:  # the workers' network: round trips and bytes (rpc_link.py)
        t_cpu_fixed, prompt["cpu_prompt"] = (
            t_cpu_fixed + net.seconds_per_token,
            prompt["cpu_prompt"] + net.prompt_seconds_per_token,
        )
    terms = {"cpu_bytes": t_cpu_bw, "cpu_compute": cpu_compute, "cpu_fixed": t_cpu_fixed,
             "gpu_bytes": sum(a for a, _ in gen.values()), "gpu_fixed": sum(b for _, b in gen.values()),
             **prompt}  # fmt: skip
    scaled = {k: v * (calibration or {}).get(k, 1.0) for k, v in terms.items()}
    total = sum(scaled[k] for k in GEN_TERMS)
    prompt_s = sum(scaled[k] for k in PROMPT_TERMS)
    cpu = {"CPU bandwidth": scaled["cpu_bytes"], "CPU compute": scaled["cpu_compute"],
           "CPU overhead": scaled["cpu_fixed"]}  # fmt: skip
    bound = (
        "GPU bandwidth" if total - sum(cpu.values()) >= sum(cpu.values()) else max(cpu, key=cpu.__getitem__)
    )
    return SpeedEstimate(
        tok_s=1.0 / total if total > 0 else 0.0,
        prompt_tok_s=1.0 / prompt_s if prompt_s > 0 else 0.0,
        bound=bound,
        bytes_per_token=sum(sum(w.read_bytes.values()) for w in work.values()),
        terms=tuple(terms.items()),
        calibrated=any(v != 1.0 for v in (calibration or {}).values()),
        link_bytes_per_token=net.bytes_per_token if net else 0,
        link_s_per_token=net.seconds_per_token if net else 0.0,
    )

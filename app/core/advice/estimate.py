"""Predict the memory a llama.cpp run needs on every device, component by component.

Mirrors how llama.cpp (as vendored in llama-cpp-python 0.3.36) places and sizes its buffers:
- weights: ``src/llama-model.cpp`` assigns repeating layers to the GPU from the last one backwards
  (``i_gpu_start = n_layer + 1 - n_gpu_layers``); the output layer counts as one and is offloaded
  first; ``token_embd`` always stays on the CPU (a tied embedding is duplicated for the output).
- KV cache: ``src/llama-kv-cache.cpp``; cells = pad(n_ctx, 256) (``llama-context.cpp``); sliding-
  window layers keep pad(min(n_ctx, n_swa·n_seq + n_ubatch), 256) cells unless ``swa_full``
  (``llama-kv-cache-iswa.cpp``).
- compute buffer: the peak of ggml-alloc's graph allocation, fitted to llama.cpp's own dry runs
  (``tests/bench/estimate_accuracy.py`` and ``tests/core/test_estimate.py`` check it).
- CPU repacking: ``ggml/src/ggml-cpu/repack.cpp`` keeps a second, interleaved copy of some types.
- a discrete GPU (CUDA, ROCm, Vulkan) changes the CPU side too: its pinned host buffer type comes
  first in ``make_cpu_buft_list`` (``llama-model.cpp``), so CPU layers are not repacked, and big
  batches of CPU layers run on the GPU with each weight copied into its compute buffer (op offload,
  ``ggml-backend.cpp``) — even at ``n_gpu_layers=0``. Checked on an H100: ``tests/gpu/``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from app.core.errors import EstimateError
from app.core.model import ggml_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of
from app.core.model.quant_recipe import file_bytes, quantized_tensors
from app.core.units import MIB

KV_PAD_CELLS = 256  # GGML_PAD(n_ctx, 256), llama-context.cpp
# KV cache element types a user can choose, with their ggml names.
KV_TYPES = ("F16", "BF16", "F32", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "IQ4_NL")

# --- process and runtime baselines (our measurements; see README "Estimator accuracy") ---
# A Python process that has imported llama_cpp, before any model: 47-50 MiB RSS measured with
# app.engine.memory_probe on x86-64 Linux (CPython 3.11, llama-cpp-python 0.3.36).
PROCESS_BASE_BYTES = 48 * MIB
# llama.cpp's own bookkeeping for a loaded model, beyond its buffers: the vocabulary (token
# strings, scores, lookup maps) dominates. Fitted on SmolLM2 (49k vocab, +17 MiB) and
# Gemma-3 (262k vocab, +42 MiB): about 11 MiB + 125 bytes per token.
MODEL_BOOKKEEPING_BYTES = 11 * MIB
VOCAB_BYTES_PER_TOKEN = 125
# CUDA context, cuBLAS handles, loaded kernels and ggml's memory pool: used VRAM minus llama.cpp's
# CUDA0 buffers was 605-611 MiB after a 512-token prompt and a decode on an H100, driver 580.159.04
# (527-533 MiB right after loading; tests/gpu/results/h100.json). Metal and Vulkan are smaller.
GPU_RUNTIME_BYTES = {"cuda": 608 * MIB, "rocm": 608 * MIB, "metal": 256 * MIB, "vulkan": 384 * MIB}
# The same runtime's share of the process's RSS (libcuda, cuBLAS, kernel images): what the
# resident set held beyond llama.cpp's buffers and PROCESS_BASE_BYTES on that machine.
GPU_RUNTIME_HOST_BYTES = {"cuda": 326 * MIB}
# Backends whose device has a pinned host buffer type (ggml_backend_dev_host_buffer_type); Metal has
# none. llama.cpp then keeps CPU-layer weights out of the repack buffers (with mmap they stay
# CPU_Mapped: llama-model-loader.cpp "avoid using a host buffer when using mmap"), allocates the CPU
# compute and output buffers pinned (resident in full), and offloads big batches to the GPU.
DISCRETE_GPU_BACKENDS = frozenset({"cuda", "rocm", "vulkan"})
# From this many tokens in a ubatch a GPU runs an op whose weight is in RAM (ggml-cuda.cu
# GGML_OP_OFFLOAD_MIN_BATCH, default 32), copying the weight into its compute buffer first.
OP_OFFLOAD_MIN_BATCH = 32
# Tiny graph inputs and bookkeeping inside the compute buffer (positions, output ids, norms):
# the residual of the dry-run fit, ~10 KiB.
COMPUTE_CONST_BYTES = 16 * 1024


# Types the CPU backend repacks into an interleaved copy (ggml_repack_get_optimal_repack_type):
# on x86 with AVX2 Q4_0, Q4_K, IQ4_NL, MXFP4, plus Q2_K with AVX-512; on ARM with dot-product
# Q4_0, Q4_K, Q5_K, Q6_K, IQ4_NL, Q8_0, MXFP4. A tensor qualifies when its row count is a
# multiple of 8 (4 for some ARM kernels; we use 8 to stay conservative in count, 4 on ARM).
def repack_types(isa: Iterable[str]) -> frozenset[str]:
    flags = {f.upper() for f in isa}
    types: set[str] = set()
    if "AVX2" in flags:
        types |= {"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"}
        if any(f.startswith("AVX512") for f in flags):
            types.add("Q2_K")
    if "NEON" in flags and ("DOTPROD" in flags or "I8MM" in flags):
        types |= {"Q4_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "Q8_0", "MXFP4"}
    return frozenset(types)


@dataclass(frozen=True)
class RunSettings:
    """How llama.cpp will be asked to run the model (mirrors llama_context_params)."""

    n_ctx: int = 4096
    n_gpu_layers: int = 0  # llama.cpp semantics: n_layer + 1 offloads everything incl. output
    type_k: str = "F16"
    type_v: str = "F16"
    flash_attn: bool = True  # CPU and CUDA support it; a quantized V cache requires it
    n_batch: int = 512
    n_ubatch: int = 512
    n_seq: int = 1
    n_outputs_max: int = 1  # the engine only asks for the last token's logits
    swa_full: bool = False
    use_mmap: bool = True
    gpu_backend: str = "cuda"
    gpu_split: tuple[float, ...] = ()  # share of offloaded layers per GPU; () = one GPU
    cpu_isa: tuple[str, ...] = ("AVX2",)
    # llama.cpp sees this GPU (a GPU build on a machine with one; the advisor knows from the
    # budget): a discrete one then changes the CPU side too and holds a context and a compute
    # buffer even at n_gpu_layers=0. Without it GPU layers follow the backend-neutral rules.
    has_gpu: bool = False

    @property
    def discrete_gpu(self) -> bool:
        """A GPU with its own memory and a pinned host buffer type is in use (see DISCRETE_GPU_BACKENDS)."""
        return self.has_gpu and self.gpu_backend in DISCRETE_GPU_BACKENDS

    def validated(self) -> RunSettings:
        if self.n_ctx < 1:
            raise EstimateError("The context length must be at least 1 token.")
        for t in (self.type_k, self.type_v):
            if t not in KV_TYPES:
                raise EstimateError(f"{t} is not a KV cache type; choose one of {', '.join(KV_TYPES)}.")
        if self.type_v not in ("F16", "BF16", "F32") and not self.flash_attn:
            raise EstimateError(
                "A quantized V cache needs flash attention.", hint="Turn flash attention on or use F16."
            )
        return self


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes one device holds for this run."""

    device: str  # "CPU", "GPU0", ...
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    output_bytes: int = 0
    repack_bytes: int = 0
    runtime_bytes: int = 0  # process baseline (CPU) or driver context (GPU)
    n_layers: int = 0
    # Mapped file pages read once at load and not used again (repacked or offloaded tensors):
    # part of the resident set until the kernel needs the memory, not part of what must fit.
    reclaimable_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return (self.weights_bytes + self.kv_bytes + self.compute_bytes + self.output_bytes
                + self.repack_bytes + self.runtime_bytes)  # fmt: skip

    @property
    def resident_bytes(self) -> int:
        """What ``top`` shows right after loading: what must fit plus reclaimable file pages."""
        return self.total_bytes + self.reclaimable_bytes

    def to_dict(self) -> dict[str, int | str]:
        return {
            "device": self.device,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "output_bytes": self.output_bytes,
            "repack_bytes": self.repack_bytes,
            "runtime_bytes": self.runtime_bytes,
            "n_layers": self.n_layers,
            "total_bytes": self.total_bytes,
            "reclaimable_bytes": self.reclaimable_bytes,
        }


@dataclass(frozen=True)
class MemoryEstimate:
    """The prediction for one (model, quant, settings)."""

    quant: str
    settings: RunSettings
    file_bytes: int
    devices: tuple[DeviceMemory, ...]
    kv_cells: int
    kv_cells_swa: int
    layer_weight_bytes: tuple[int, ...] = field(repr=False, default=())

    @property
    def ram_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices if d.device == "CPU")

    @property
    def rss_bytes(self) -> int:
        """Predicted peak resident set of the process (includes reclaimable mapped pages)."""
        return self.device("CPU").resident_bytes

    @property
    def vram_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices if d.device != "CPU")

    def device(self, name: str) -> DeviceMemory:
        for d in self.devices:
            if d.device == name:
                return d
        return DeviceMemory(name)


def kv_cells(model: ModelInfo, s: RunSettings) -> tuple[int, int]:
    """(cells of full-attention layers, cells of sliding-window layers)."""
    full = _pad(s.n_ctx, KV_PAD_CELLS)
    if not model.has_swa or s.swa_full:
        return full, full
    swa = _pad(min(full, model.sliding_window * s.n_seq + s.n_ubatch), KV_PAD_CELLS)
    return full, swa


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def kv_layer_bytes(model: ModelInfo, s: RunSettings, il: int, cells_full: int, cells_swa: int) -> int:
    """K + V bytes of layer ``il`` (row_size(type, n_head_kv·head_dim) · cells, for K and for V)."""
    n_kv = model.n_head_kv[il]
    if n_kv == 0:
        return 0
    cells = cells_swa if model.swa_layers[il] else cells_full
    try:
        k = ggml_types.row_bytes(s.type_k, n_kv * model.head_dim_k)
        v = ggml_types.row_bytes(s.type_v, n_kv * model.head_dim_v)
    except ValueError:
        # llama.cpp refuses such a context too: quantized rows must be whole blocks.
        raise EstimateError(
            f"A {s.type_k}/{s.type_v} KV cache does not fit this model's head size ({model.head_dim_k}).",
            hint="Use an F16 or Q8_0 KV cache.",
        ) from None
    return (k + v) * cells


def compute_buffer_bytes(
    model: ModelInfo,
    s: RunSettings,
    cells_full: int,
    cells_swa: int,
    *,
    filled_tokens: int | None = None,
    gpu: bool = False,
) -> int:
    """Peak of llama.cpp's graph allocation for a worst-case ubatch (CPU backend; ``gpu``: CUDA's).

    Fitted to dry runs (``app.engine.memory_probe`` with ``dry_run``) of llama-shaped models
    that vary one width at a time: the FFN stage keeps about 4·n_embd + 3·n_ff floats per token
    live; without flash attention the attention stage keeps 3·n_embd + 2·(q width) + 2·(kv width)
    floats per token plus the f32 scores (n_head·n_kv per token). The KQ masks (f16 with flash
    attention, f32 without) are inputs that live through the whole graph, one per cache kind.

    llama.cpp reserves the buffer for a full cache; a graph only spans the cells in use, padded
    to 256 (``llama_kv_cache::get_n_kv``). With ``filled_tokens`` the result is the part a run
    with that many tokens in the context has touched — what the resident set shows.
    """
    if filled_tokens is not None:
        used = _pad(max(filled_tokens, 1), KV_PAD_CELLS)
        cells_full, cells_swa = min(cells_full, used), min(cells_swa, used)
    ub = min(s.n_ubatch, s.n_batch)
    e = model.n_embd
    ff = max(model.n_ff, model.n_ff_expert * max(model.n_expert_used, 1))
    n_head = max(model.n_head) if model.n_head else 0
    qd = n_head * model.head_dim_k
    kvd = max(model.n_head_kv) * max(model.head_dim_k, model.head_dim_v) if model.n_head_kv else 0
    mask = _mask_bytes(model, s, cells_full, cells_swa)
    # CUDA keeps one n_embd row less live in the FFN stage: its compute buffers were exactly
    # 512·4·(3·n_embd + 3·n_ff) + mask for Llama-3.2-3B and 3.1-8B on the H100 (tests/gpu).
    ffn_stage = ub * 4 * ((3 if gpu else 4) * e + 3 * ff)
    if s.flash_attn:
        attn_stage = ub * 4 * (3 * e + 2 * qd + 2 * kvd)
    else:
        attn_stage = ub * 4 * (3 * e + 2 * qd + 2 * kvd) + cells_full * ub * n_head * 4
    return max(ffn_stage, attn_stage) + mask + COMPUTE_CONST_BYTES


def _mask_bytes(model: ModelInfo, s: RunSettings, cells_full: int, cells_swa: int) -> int:
    """The KQ masks: f16 with flash attention, f32 without; one per cache kind."""
    ub = min(s.n_ubatch, s.n_batch)
    elt = 2 if s.flash_attn else 4
    mask = cells_full * ub * elt
    if model.has_swa and cells_swa != cells_full:
        mask += cells_swa * ub * elt
    return mask


def layer_devices(n_layer: int, s: RunSettings) -> list[str]:
    """Device of each repeating layer and, last, of the output layer (index n_layer)."""
    n_gpu = max(0, min(s.n_gpu_layers, n_layer + 1))
    start = n_layer + 1 - n_gpu
    split = list(s.gpu_split) or [1.0]
    total = sum(split)
    bounds, acc = [], 0.0
    for w in split:
        acc += w / total
        bounds.append(acc)
    out: list[str] = []
    for il in range(n_layer + 1):
        if il < start or n_gpu == 0:
            out.append("CPU")
            continue
        frac = (il - start) / n_gpu
        gpu = next((i for i, b in enumerate(bounds) if frac < b), len(bounds) - 1)
        out.append(f"GPU{gpu}")
    return out


def is_output_tensor(name: str) -> bool:
    return name.startswith(("output.", "output_norm."))


def tensors_for(model: ModelInfo, quant: str | None) -> tuple[TensorInfo, ...]:
    """The tensor table of ``model`` as a ``quant`` file (None or the file's own type: as it is)."""
    if quant is None or quant == model.file_type:
        return model.tensors
    return quantized_tensors(model, quant)


def estimate(
    model: ModelInfo,
    quant: str | None = None,
    settings: RunSettings | None = None,
    *,
    tensors: tuple[TensorInfo, ...] | None = None,
    filled_tokens: int | None = None,
) -> MemoryEstimate:
    """Memory of running ``model`` quantized to ``quant`` (None = as the file is) with ``settings``.

    By default the worst case — a full context — which is what must fit. ``filled_tokens``
    predicts the resident memory with that many tokens in the context instead (the compute
    buffer is only touched as far as the cache is filled). ``tensors`` may pass a precomputed
    :func:`tensors_for` table when many settings are tried.
    """
    s = (settings or RunSettings()).validated()
    if tensors is None:
        tensors = tensors_for(model, quant)
    quant = quant or model.file_type or "?"
    devices = layer_devices(model.n_layer, s)
    out_dev = devices[model.n_layer]
    repackable = frozenset() if s.discrete_gpu else repack_types(s.cpu_isa)

    acc: dict[str, dict[str, int]] = {}

    def add(dev: str, key: str, n: int) -> None:
        acc.setdefault(dev, {}).setdefault(key, 0)
        acc[dev][key] += n

    layer_bytes = [0] * model.n_layer
    # File order and offsets: a real file's, or the converter's order for a predicted one.
    offsets, pos = [], 0
    real_offsets = any(t.offset_bytes for t in tensors)
    for t in tensors:
        offsets.append(t.offset_bytes if real_offsets else pos)
        pos += (t.n_bytes + 31) // 32 * 32
    span_lo, span_hi = None, 0  # llama.cpp keeps mapped only the span of CPU-mapped tensors
    cpu_plain = 0  # CPU tensors used as they are: read into RAM (no mmap) or mapped and touched
    elsewhere: list[tuple[int, int]] = []  # repacked or offloaded: read once at load, then unused
    for t, off in zip(tensors, offsets, strict=True):
        nbytes = t.n_bytes
        li = layer_of(t.name)
        if li is not None and li < model.n_layer:
            dev = devices[li]
            layer_bytes[li] += nbytes
        elif is_output_tensor(t.name):
            dev = out_dev
        else:
            dev = "CPU"  # token_embd and other input tensors stay on the CPU
        if t.name == "token_embd.weight" and model.tied_embeddings and out_dev != "CPU":
            add(out_dev, "weights", nbytes)  # the output matmul needs its own copy on the GPU
        if dev != "CPU":
            add(dev, "weights", nbytes)
            elsewhere.append((off, nbytes))
            continue
        repacked = (t.type_name in repackable and len(t.shape) >= 2 and t.shape[1] % 8 == 0
                    and t.name != "token_embd.weight")  # fmt: skip
        if repacked:
            add("CPU", "repack", nbytes)
            elsewhere.append((off, nbytes))
            continue
        span_lo = off if span_lo is None else min(span_lo, off)
        span_hi = max(span_hi, off + nbytes)
        if t.name == "token_embd.weight" and not model.tied_embeddings and s.use_mmap:
            # get_rows reads one row per token, but the mapping is populated at load (MAP_POPULATE,
            # llama-mmap.cpp): resident, yet clean pages the kernel may drop (measured on the H100).
            elsewhere.append((off, nbytes))
            continue
        cpu_plain += nbytes
    add("CPU", "weights", cpu_plain)
    if s.use_mmap and span_lo is not None:
        # Pages of repacked and offloaded tensors inside the mapped span were read at load and
        # stay resident while mapped (measured: SmolLM2 as Q4_0 peaks at mapped + repack). They
        # are clean file pages the kernel drops under pressure, so they count in RSS, not in fit.
        lo, hi = span_lo, span_hi
        add("CPU", "reclaimable", sum(n for o, n in elsewhere if lo <= o < hi))

    cells_full, cells_swa = kv_cells(model, s)
    for il in range(model.n_layer):
        add(devices[il], "kv", kv_layer_bytes(model, s, il, cells_full, cells_swa))
        add(devices[il], "layers", 1)

    # VRAM and pinned host memory are allocated whole; pageable CPU memory is touched as used.
    gpu_compute = compute_buffer_bytes(model, s, cells_full, cells_swa, gpu=s.discrete_gpu)
    gpu_devs = sorted({d for d in devices if d != "CPU"})
    if s.discrete_gpu and not gpu_devs:
        gpu_devs = ["GPU0"]  # no layers there, but its context and op-offload compute buffer
    for i, d in enumerate(gpu_devs):
        copies = offload_copy_bytes(model, s, tensors, devices) if i == 0 and s.discrete_gpu else 0
        add(d, "compute", gpu_compute + copies)
        add(d, "runtime", GPU_RUNTIME_BYTES.get(s.gpu_backend, GPU_RUNTIME_BYTES["cuda"]))
    if s.discrete_gpu:
        # Big batches run on the GPU whatever the split: the CPU buffer holds the graph inputs.
        add("CPU", "compute", inputs_compute_bytes(model, s, cells_full, cells_swa))
        add("CPU", "runtime", GPU_RUNTIME_HOST_BYTES.get(s.gpu_backend, 0))
    elif "CPU" in devices[: model.n_layer] or not gpu_devs:
        add(
            "CPU",
            "compute",
            compute_buffer_bytes(model, s, cells_full, cells_swa, filled_tokens=filled_tokens),
        )
    else:  # every layer offloaded to a GPU of another kind
        add("CPU", "compute", inputs_compute_bytes(model, s, cells_full, cells_swa))
    add("CPU", "output", model.n_vocab * 4 * max(1, s.n_outputs_max))
    add(
        "CPU", "runtime", PROCESS_BASE_BYTES + MODEL_BOOKKEEPING_BYTES + model.n_vocab * VOCAB_BYTES_PER_TOKEN
    )

    result = []
    for dev in ["CPU", *gpu_devs]:
        a = acc.get(dev, {})
        result.append(
            DeviceMemory(
                device=dev,
                weights_bytes=a.get("weights", 0),
                kv_bytes=a.get("kv", 0),
                compute_bytes=a.get("compute", 0),
                output_bytes=a.get("output", 0),
                repack_bytes=a.get("repack", 0),
                runtime_bytes=a.get("runtime", 0),
                n_layers=a.get("layers", 0),
                reclaimable_bytes=a.get("reclaimable", 0),
            )
        )
    return MemoryEstimate(
        quant=quant,
        settings=s,
        file_bytes=file_bytes(tensors),
        devices=tuple(result),
        kv_cells=cells_full,
        kv_cells_swa=cells_swa,
        layer_weight_bytes=tuple(layer_bytes),
    )


def inputs_compute_bytes(model: ModelInfo, s: RunSettings, cells_full: int, cells_swa: int) -> int:
    """CPU compute when the GPU runs the big batches: graph inputs live on the CPU (ggml-backend.cpp
    assigns them to the last backend) — the KQ masks and two n_embd rows per token (the embeddings
    and a copy on their way to the GPU). Exactly the CUDA_Host compute buffers on the H100 (tests/gpu),
    with any number of layers offloaded."""
    ub = min(s.n_ubatch, s.n_batch)
    return 2 * ub * model.n_embd * 4 + _mask_bytes(model, s, cells_full, cells_swa) + COMPUTE_CONST_BYTES


def offload_copy_bytes(
    model: ModelInfo, s: RunSettings, tensors: tuple[TensorInfo, ...], devices: list[str]
) -> int:
    """The GPU compute buffer's room for what CPU layers send over for a big batch (op offload).

    Each op with a weight in RAM starts its own split (ggml-backend.cpp "by starting a new split,
    the memory of the previously offloaded weights can be reused"), so one weight copy — the
    largest — is live at a time; the output matmul only sees n_outputs_max rows, and token_embd
    is read by get_rows, which is never offloaded. Attention follows onto the GPU with copies of
    one layer's K and V views, the cache itself staying in RAM. The sum over-predicts the H100's
    buffers by 0-80 MiB (they overlap a little) and never under-predicted them by more than 8 MiB.
    """
    if min(s.n_ubatch, s.n_batch) < OP_OFFLOAD_MIN_BATCH or "CPU" not in devices[: model.n_layer]:
        return 0
    cells_full, cells_swa = kv_cells(model, s)
    kv = max(kv_layer_bytes(model, s, il, cells_full, cells_swa)
             for il in range(model.n_layer) if devices[il] == "CPU")  # fmt: skip
    largest = 0
    for t in tensors:
        li = layer_of(t.name)
        on_cpu_layer = li is not None and li < model.n_layer and devices[li] == "CPU"
        output_offloaded = (is_output_tensor(t.name) and devices[model.n_layer] == "CPU"
                            and s.n_outputs_max >= OP_OFFLOAD_MIN_BATCH)  # fmt: skip
        if (on_cpu_layer or output_offloaded) and len(t.shape) >= 2:
            largest = max(largest, t.n_bytes)
    return largest + kv

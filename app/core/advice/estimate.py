"""Predict the memory a llama.cpp run needs on every device, component by component.

Mirrors how llama.cpp (as vendored in llama-cpp-python 0.3.36) places and sizes its buffers:
- weights: each layer's tensors go where :mod:`app.core.advice.placement` puts the layer;
  ``token_embd`` always stays on the CPU (a tied embedding is duplicated for the output).
- KV cache and compute buffers: :mod:`app.core.advice.buffers`.
- CPU repacking: ``ggml/src/ggml-cpu/repack.cpp`` keeps a second, interleaved copy of some types
  (:func:`app.core.advice.run_settings.repack_types`).
- a discrete GPU (CUDA, ROCm, Vulkan) changes the CPU side too: its pinned host buffer type comes
  first in ``make_cpu_buft_list`` (``llama-model.cpp``), so CPU layers are not repacked, and big
  batches of CPU layers run on the GPU with each weight copied into its compute buffer (op offload,
  ``ggml-backend.cpp``) — even at ``n_gpu_layers=0``. Checked on an H100: ``tests/gpu/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from app.core.advice.buffers import (
    OP_OFFLOAD_MIN_BATCH,
    compute_buffer_bytes,
    inputs_compute_bytes,
    kv_cells,
    kv_layer_bytes,
    offload_copy_bytes,
)
from app.core.advice.placement import (
    ROW_LOOKUP_TENSORS,
    is_expert_tensor,
    is_output_tensor,
    is_row_lookup,
    layer_devices,
    tensor_device,
)
from app.core.advice.run_settings import KV_TYPES, RunSettings, repack_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of
from app.core.model.quant_recipe import file_bytes, quantized_tensors
from app.core.units import MIB

# Callers import the settings and the placement helpers with the estimate.
__all__ = [
    "KV_TYPES",
    "DeviceMemory",
    "MemoryEstimate",
    "RunSettings",
    "estimate",
    "is_output_tensor",
    "layer_devices",
    "read_once_ranges",
    "tensors_for",
]

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
PIPELINE_COPIES = 4  # GGML_SCHED_MAX_COPIES (ggml-backend.cpp)
GPU_RUNTIME_BYTES = {"cuda": 608 * MIB, "rocm": 608 * MIB, "metal": 256 * MIB, "vulkan": 384 * MIB}
# The same runtime's share of the process's RSS (libcuda, cuBLAS, kernel images): what the
# resident set held beyond llama.cpp's buffers and PROCESS_BASE_BYTES on that machine.
GPU_RUNTIME_HOST_BYTES = {"cuda": 326 * MIB}


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
    kv_cells: int  # of a full-attention layer; sliding-window layers may keep fewer (buffers.kv_cells)
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


def tensors_for(model: ModelInfo, quant: str | None) -> tuple[TensorInfo, ...]:
    """The tensor table of ``model`` as a ``quant`` file (None or the file's own type: as it is)."""
    if quant is None or quant == model.file_type:
        return model.tensors
    return quantized_tensors(model, quant)


def _file_offsets(tensors: tuple[TensorInfo, ...]) -> list[int]:
    """Each tensor's offset in the data section: a real file's, or the converter's order for a
    predicted one (32-byte aligned, one after the other)."""
    if any(t.offset_bytes for t in tensors):
        return [t.offset_bytes for t in tensors]
    offsets, pos = [], 0
    for t in tensors:
        offsets.append(pos)
        pos += (t.n_bytes + 31) // 32 * 32
    return offsets


def _placed(
    model: ModelInfo, s: RunSettings, tensors: tuple[TensorInfo, ...], offsets: list[int], devices: list[str]
) -> Iterator[tuple[TensorInfo, int, int | None, str, str]]:
    """Every tensor with its offset, its repeating layer (None: not in one), its device and what
    llama.cpp does with its bytes: "device"
    (uploaded to a GPU at load), "repacked" (copied into the CPU's interleaved buffer at load),
    "rows" (an untied input embedding, mapped: ``get_rows`` reads one row per token) or "plain"
    (read every token where it lies: in the mapping, or in RAM without mmap). Draft-head (MTP) blocks,
    which llama.cpp does not load, are left out."""
    repackable = frozenset() if s.discrete_gpu else repack_types(s.cpu_isa)
    out_dev = devices[model.n_layer]
    first_mtp = model.n_layer - model.n_layer_mtp
    for t, off in zip(tensors, offsets, strict=True):
        li = layer_of(t.name)
        if li is not None and first_mtp <= li < model.n_layer:
            continue  # a draft head (MTP) block: llama.cpp skips it unless asked to load it (TENSOR_SKIP)
        if li is not None and li >= model.n_layer:
            li = None  # a block past the repeating layers: placed like an input tensor
        if li is not None:
            dev = tensor_device(t.name, li, devices, s)
        elif is_output_tensor(t.name):
            dev = out_dev
        else:
            dev = "CPU"  # token_embd and other input tensors stay on the CPU
        if dev != "CPU":
            yield t, off, li, dev, "device"
        # Repacked when its row count is a multiple of 8 (some ARM kernels take 4: we ask 8 everywhere).
        elif (t.type_name in repackable and len(t.shape) >= 2 and t.shape[1] % 8 == 0
              and t.name not in ROW_LOOKUP_TENSORS):  # fmt: skip
            yield t, off, li, dev, "repacked"
        elif is_row_lookup(t.name, model.tied_embeddings) and s.use_mmap:
            # get_rows reads one row per token, but the mapping is populated at load (MAP_POPULATE,
            # llama-mmap.cpp): resident, yet clean pages the kernel may drop (measured on the H100).
            yield t, off, li, dev, "rows"
        else:
            yield t, off, li, dev, "plain"


def read_once_ranges(
    model: ModelInfo, settings: RunSettings, *, page_bytes: int = 4096
) -> tuple[tuple[int, int], ...]:
    """The file byte ranges ``(offset, length)`` llama.cpp reads at load and not again (the header,
    tensors uploaded to a GPU or repacked, an untied input embedding), for the model process to
    hand back once loaded: the tensors are what the estimate counts as reclaimable; the header is
    not mapped after the load, so no part of the resident set, but cached and charged to the
    process's memory cgroup. Whole pages only (a page shared with a tensor that is still read
    stays), merged, in file order; empty when the file's layout is not known (a split or predicted
    model) or nothing is mapped."""
    s = settings.validated()
    if model.data_offset_bytes is None or not s.use_mmap:
        return ()
    tensors = model.tensors
    devices = layer_devices(model.n_layer, s)
    base = model.data_offset_bytes
    spans = [(0, base)]  # the header: llama.cpp parses the metadata (the vocabulary) at load
    spans += sorted(
        (base + off, base + off + t.n_bytes)
        for t, off, _li, _dev, role in _placed(model, s, tensors, _file_offsets(tensors), devices)
        if role != "plain"
    )
    merged: list[list[int]] = []
    for lo, hi in spans:  # tensors start 32-byte aligned: a smaller gap is padding, no tensor
        if merged and lo - merged[-1][1] < 32:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out = []
    for lo, hi in merged:
        a = -(-lo // page_bytes) * page_bytes
        b = hi // page_bytes * page_bytes
        if b > a:
            out.append((a, b - a))
    return tuple(out)


def _offload_copies(
    model: ModelInfo, s: RunSettings, tensors: tuple[TensorInfo, ...], devices: list[str]
) -> int:
    """The GPU compute buffer's room for weights in RAM that a big batch takes over (op offload,
    :func:`app.core.advice.buffers.offload_copy_bytes`): those of CPU layers, and the experts an
    offloaded layer keeps in RAM (``moe_cpu_layers``) — a stacked expert tensor is copied whole,
    all experts, for a batch of ``OP_OFFLOAD_MIN_BATCH`` tokens or more (ggml-cuda.cu offload_op
    counts MUL_MAT_ID's tokens). Experts of CPU layers are CPU-layer tensors already."""
    copies = offload_copy_bytes(model, s, tensors, devices)
    if s.moe_cpu_layers <= 0 or min(s.n_ubatch, s.n_batch) < OP_OFFLOAD_MIN_BATCH:
        return copies
    experts = [
        t.n_bytes
        for t in tensors
        if (li := layer_of(t.name)) is not None
        and li < min(s.moe_cpu_layers, model.n_layer)
        and devices[li] != "CPU"
        and is_expert_tensor(t.name)
    ]
    return max(copies, max(experts, default=0))


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

    acc: dict[str, dict[str, int]] = {}

    def add(dev: str, key: str, n: int) -> None:
        acc.setdefault(dev, {}).setdefault(key, 0)
        acc[dev][key] += n

    layer_bytes = [0] * model.n_layer
    # File order and offsets: a real file's, or the converter's order for a predicted one.
    offsets = _file_offsets(tensors)
    span_lo, span_hi = None, 0  # llama.cpp keeps mapped only the span of CPU-mapped tensors
    cpu_plain = 0  # CPU tensors used as they are: read into RAM (no mmap) or mapped and touched
    elsewhere: list[tuple[int, int]] = []  # repacked or offloaded: read once at load, then unused
    for t, off, li, dev, role in _placed(model, s, tensors, offsets, devices):
        nbytes = t.n_bytes
        if li is not None:
            layer_bytes[li] += nbytes
        if t.name == "token_embd.weight" and model.tied_embeddings and out_dev != "CPU":
            add(out_dev, "weights", nbytes)  # the output matmul needs its own copy on the GPU
        if role == "device":
            add(dev, "weights", nbytes)
            elsewhere.append((off, nbytes))
            continue
        if role == "repacked":
            add("CPU", "repack", nbytes)
            elsewhere.append((off, nbytes))
            continue
        span_lo = off if span_lo is None else min(span_lo, off)
        span_hi = max(span_hi, off + nbytes)
        if role == "rows":
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
    if s.discrete_gpu and not any(not s.is_rpc(d) for d in gpu_devs):
        # no layers there, but its context and op-offload compute buffer
        gpu_devs.append(f"GPU{len(s.rpc_devices)}")
    local_gpus = [d for d in gpu_devs if not s.is_rpc(d)]
    ub_rows = min(s.n_ubatch, s.n_batch) * model.n_embd * 4
    inputs = inputs_compute_bytes(model, s, cells_full, cells_swa)
    # Everything offloaded over several devices: llama.cpp pipelines ubatches (llama-context.cpp
    # pipeline_parallel; RPC devices have async compute and events), and the scheduler keeps
    # GGML_SCHED_MAX_COPIES = 4 copies of each split's inputs. Measured over two workers (SmolLM2,
    # Gemma 3: within 4 %); local multi-GPU plans keep their own rules until measured there.
    pipeline = (
        bool(s.rpc_devices) and len(gpu_devs) > 1 and s.n_gpu_layers > model.n_layer and not s.moe_cpu_layers
    )
    extra_copies = PIPELINE_COPIES - 1 if pipeline else 0
    for d in gpu_devs:
        if s.is_rpc(d):
            # a worker's CPU backend runs the layers' graph; the embeddings stay here (two n_embd rows
            # per token less than a CPU-only run: measured within 2 % on SmolLM2 and Gemma 3)
            add(
                d,
                "compute",
                compute_buffer_bytes(model, s, cells_full, cells_swa) - 2 * ub_rows + extra_copies * inputs,
            )
            continue
        copies = _offload_copies(model, s, tensors, devices) if d == local_gpus[0] and s.discrete_gpu else 0
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
    else:  # every layer offloaded to a GPU of another kind (or to workers)
        add("CPU", "compute", inputs + extra_copies * (inputs - ub_rows))
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
        layer_weight_bytes=tuple(layer_bytes),
    )

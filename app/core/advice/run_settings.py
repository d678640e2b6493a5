"""How llama.cpp will be asked to run a model (llama_context_params and the model's placement),
and which of its choices change the memory a run needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from app.core.errors import EstimateError

# KV cache element types a user can choose, with their ggml names.
KV_TYPES = ("F16", "BF16", "F32", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "IQ4_NL")
# Backends whose device has a pinned host buffer type (ggml_backend_dev_host_buffer_type); Metal has
# none. llama.cpp then keeps CPU-layer weights out of the repack buffers (with mmap they stay
# CPU_Mapped: llama-model-loader.cpp "avoid using a host buffer when using mmap"), allocates the CPU
# compute and output buffers pinned (resident in full), and offloads big batches to the GPU.
DISCRETE_GPU_BACKENDS = frozenset({"cuda", "rocm", "vulkan"})


@dataclass(frozen=True)
class RunSettings:
    """How llama.cpp will be asked to run the model (mirrors llama_context_params)."""

    n_ctx: int = 4096
    n_gpu_layers: int = 0  # llama.cpp semantics: n_layer + 1 offloads everything incl. output
    # MoE: the routed experts of the first ``moe_cpu_layers`` layers stay in RAM whatever the split
    # (llama.cpp's --n-cpu-moe N; n_layer or more is --cpu-moe, every layer's experts). 0: none.
    moe_cpu_layers: int = 0
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
    # Workers' devices (``tailorlm worker``, llama.cpp's RPC backend), one endpoint per device:
    # they are the first entries of the split ("GPU0" …), as llama.cpp puts RPC devices first, and
    # run the backend-neutral rules (a remote CPU: no driver context here, no repack, no op offload).
    rpc_devices: tuple[str, ...] = ()
    # The output matmul's weights stay here (a tensor override to the CPU) although the output layer
    # is offloaded: over workers a token then brings back its hidden state, not n_vocab logits.
    output_here: bool = False
    cpu_isa: tuple[str, ...] = ("AVX2",)
    # llama.cpp sees this GPU (a GPU build on a machine with one; the advisor knows from the
    # budget): a discrete one then changes the CPU side too and holds a context and a compute
    # buffer even at n_gpu_layers=0. Without it GPU layers follow the backend-neutral rules.
    has_gpu: bool = False

    def is_rpc(self, device: str) -> bool:
        """Whether ``device`` ("GPU0" …) is a worker's."""
        index = device.removeprefix("GPU")
        return device.startswith("GPU") and index.isdigit() and int(index) < len(self.rpc_devices)

    @property
    def discrete_gpu(self) -> bool:
        """A GPU with its own memory and a pinned host buffer type is in use (see DISCRETE_GPU_BACKENDS)."""
        return self.has_gpu and self.gpu_backend in DISCRETE_GPU_BACKENDS

    def validated(self) -> RunSettings:
        if self.n_ctx < 1:
            raise EstimateError("The context length must be at least 1 token.")
        if self.moe_cpu_layers < 0:
            raise EstimateError("The number of layers whose experts stay in RAM cannot be negative.")
        for t in (self.type_k, self.type_v):
            if t not in KV_TYPES:
                raise EstimateError(f"{t} is not a KV cache type; choose one of {', '.join(KV_TYPES)}.")
        if self.type_v not in ("F16", "BF16", "F32") and not self.flash_attn:
            raise EstimateError(
                "A quantized V cache needs flash attention.", hint="Turn flash attention on or use F16."
            )
        return self


# Types the CPU backend repacks into an interleaved copy (ggml_repack_get_optimal_repack_type):
# on x86 with AVX2 Q4_0, Q4_K, IQ4_NL, MXFP4, plus Q2_K with AVX-512; on ARM with dot-product
# Q4_0, Q4_K, Q5_K, Q6_K, IQ4_NL, Q8_0, MXFP4. Which tensors of these types qualify is decided
# where the weights are placed (app.core.advice.estimate).
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

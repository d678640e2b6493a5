"""What llama.cpp says in its log about the memory it allocated, parsed once for every caller.

The lines are llama.cpp's own (``load_tensors``, ``llama_kv_cache``, ``sched_reserve``,
``llama_context``); they give sizes to 0.01 MiB, which is what the estimator is compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MIB = 1 << 20
# "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB"
_MODEL = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache:        CPU KV buffer size =    90.00 MiB"
_KV = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache: size =   12.00 MiB (  4096 cells, ..." — logged in dry runs too
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB")
# "sched_reserve:        CPU compute buffer size =    99.38 MiB" (not the "~llama_context" recap)
_COMPUTE = re.compile(r"(\S+) compute buffer size =\s+([\d.]+) MiB")
# "llama_context:        CPU  output buffer size =     0.19 MiB"
_OUTPUT = re.compile(r"(\S+)\s+output buffer size =\s+([\d.]+) MiB")


@dataclass
class Buffers:
    model: dict[str, int] = field(default_factory=dict)  # buffer type ("CPU_Mapped", "CUDA0", …) → bytes
    kv: dict[str, int] = field(default_factory=dict)
    compute: dict[str, int] = field(default_factory=dict)
    output: dict[str, int] = field(default_factory=dict)
    kv_size_bytes: int = 0  # what the KV cache needs, known even in a no_alloc dry run
    flash_attn: bool = False

    def flat(self) -> dict[str, int]:
        """``{"model:CPU_Mapped": bytes, "kv:CPU": bytes, …}``."""
        return {f"{kind}:{dev}": n for kind in ("model", "kv", "compute", "output")
                for dev, n in getattr(self, kind).items()}  # fmt: skip


def _add(table: dict[str, int], key: str, mib: str) -> None:
    table[key] = table.get(key, 0) + round(float(mib) * _MIB)


def parse_buffers(log: str) -> Buffers:
    b = Buffers()
    for line in log.splitlines():
        if m := _KV_SIZE.search(line):
            b.kv_size_bytes += round(float(m.group(1)) * _MIB)
        if m := _MODEL.search(line):
            _add(b.model, m.group(1), m.group(2))
        elif m := _KV.search(line):
            _add(b.kv, m.group(1), m.group(2))
        elif "~llama_context" not in line and (m := _COMPUTE.search(line)):
            b.compute[m.group(1)] = round(float(m.group(2)) * _MIB)  # the last reserve wins
        elif m := _OUTPUT.search(line):
            _add(b.output, m.group(1), m.group(2))
        # "auto" resolves at context creation: resolve_fused_ops logs the outcome
        if "Flash Attention enabled" in line or (
            line.startswith("llama_context: flash_attn") and line.rstrip().endswith("enabled")
        ):
            b.flash_attn = True
    return b


# --- why a load failed ---------------------------------------------------------------------

# "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 16384.00 MiB on device 0: cudaMalloc failed: out of memory"
_CUDA_MALLOC = re.compile(r"allocating ([\d.]+) MiB on device (\d+): cudaMalloc failed: (.+)")
# ggml-alloc.c, any backend: "alloc_tensor_range: failed to allocate CUDA0 buffer of size 17179869184"
_ALLOC = re.compile(r"failed to allocate (\S+) buffer of size (\d+)\s*$")
# What llama.cpp was allocating when it gave up (llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp).
_STAGES = (
    (re.compile(r"unable to allocate \S+ buffer"), "the model weights"),
    (re.compile(r"failed to allocate buffer for kv cache"), "the KV cache"),
    (re.compile(r"failed to allocate compute|failed to reserve graph"), "the compute buffers"),
    (re.compile(r"failed to (?:reserve|allocate) (?:initial )?output buffer"), "the output buffer"),
)
# ggml-cuda's CUDA_CHECK before it aborts: "CUDA error: out of memory"
_CUDA_ERROR = re.compile(r"CUDA error: (.+)")


@dataclass(frozen=True)
class AllocFailure:
    """A buffer llama.cpp could not allocate, read from its log."""

    buffer: str  # ggml buffer type: "CUDA0", "CUDA_Host", "CPU", "Metal", "Vulkan0" …
    # "the model weights" | "the KV cache" | "the compute buffers" | "the output buffer" | "a buffer"
    what: str
    needed_bytes: int
    device_error: str | None = None  # "out of memory", as the device API said it

    @property
    def in_ram(self) -> bool:
        return self.buffer.startswith("CPU") or self.buffer.endswith("_Host")


def alloc_failure(log: str) -> AllocFailure | None:
    """The first allocation that failed in ``log`` and what it was for; None if none did."""
    failure: AllocFailure | None = None
    device_error: str | None = None
    for line in log.splitlines():
        if failure is None and (m := _CUDA_MALLOC.search(line)):
            device_error = m.group(3).strip()
            failure = AllocFailure(
                f"CUDA{m.group(2)}", "a buffer", round(float(m.group(1)) * _MIB), device_error
            )
        elif m := _ALLOC.search(line):
            if failure is None or (failure.what == "a buffer" and failure.buffer == m.group(1)):
                failure = AllocFailure(m.group(1), "a buffer", int(m.group(2)), device_error)
        elif failure is not None and failure.what == "a buffer":
            what = next((w for pattern, w in _STAGES if pattern.search(line)), None)
            if what is not None:
                failure = AllocFailure(failure.buffer, what, failure.needed_bytes, failure.device_error)
    return failure


def device_error(text: str) -> str | None:
    """The CUDA error ggml reported before aborting ("out of memory"), if any."""
    found = [m.group(1).strip() for m in _CUDA_ERROR.finditer(text)]
    return found[-1] if found else None


_NEXT_STEP = {
    "the model weights": "Put fewer layers on the GPU or choose a smaller quantization",
    "the KV cache": "Use a shorter context, a quantized KV cache (Q8_0 halves it) or fewer GPU layers",
    "the compute buffers": "Use fewer GPU layers or a shorter context",
}


def out_of_memory_message(failure: AllocFailure, free_bytes: int | None) -> tuple[str, str]:
    """("CUDA out of memory while allocating the KV cache: 16.0 GiB needed, 7.31 GiB free on CUDA0", hint)."""
    from app.core.units import format_bytes

    if failure.in_ram:
        kind, where, free_word = "Out of memory (RAM)", "", "available"
    else:
        backend = "CUDA" if failure.buffer.startswith("CUDA") else failure.buffer
        kind, where, free_word = f"{backend} out of memory", f" on {failure.buffer}", "free"
    if failure.device_error and "memory" not in failure.device_error:
        kind = f"{failure.buffer} could not allocate ({failure.device_error})"
    free = f", {format_bytes(free_bytes)} {free_word}{where}" if free_bytes is not None else where
    message = f"{kind} while allocating {failure.what}: {format_bytes(failure.needed_bytes)} needed{free}"
    step = _NEXT_STEP.get(failure.what, "Use fewer GPU layers, a shorter context or a smaller quantization")
    if failure.in_ram:
        step = "Close other programs, or use a shorter context or a smaller quantization"
    return message, f"{step}; `tailorlm advise` plans against the memory that is free now."


# llama.cpp's wrappers around the real reason (llama.cpp src/llama.cpp, llama-model-loader.cpp): they
# say only *that* the load failed, so the line before them is the one worth showing.
_GENERIC_FAILURES = ("failed to load model", "llama_model_loader: failed to load model from")


def load_error(log: str) -> str | None:
    """llama.cpp's most specific reason a model did not load ("tensor 'blk.15…' data is not within
    the file bounds, model is corrupted or incomplete"), or None when it gave none."""
    found: list[str] = []
    for line in log.splitlines():
        low = line.lower()
        if "error" not in low and "failed" not in low:
            continue
        reason = line.split("error loading model:", 1)[-1].strip()
        if not any(reason.endswith(g) or g in reason for g in _GENERIC_FAILURES):
            found.append(reason)
    return found[-1] if found else None


def damaged_file_message(log: str) -> tuple[str, str]:
    """(message, next step) for a model file llama.cpp refused to read, with its own reason."""
    reason = load_error(log) or "it gave no reason"
    if "unknown model architecture" in reason:
        return (f"this llama.cpp does not know the model's architecture ({reason})",
                "A newer TailorLM (with a newer llama.cpp) may run it; choose another model meanwhile.")  # fmt: skip
    return (f"the file looks damaged or incomplete ({reason})",
            "Download it again (`tailorlm pull` checks every byte against the Hub's SHA-256), or choose another file.")  # fmt: skip


# llama-model-loader.cpp, at debug level: "tensor blk.0.ffn_up_exps.weight (6 MiB q4_K) buffer type
# overridden to CPU" — one line per tensor a buffer-type override moved.
_OVERRIDDEN = re.compile(r"tensor (\S+) \([^)]*\) buffer type overridden to (\S+)")


def overridden_tensors(log: str) -> dict[str, str]:
    """The tensors a buffer-type override placed (``--cpu-moe``), with the buffer type they went to."""
    return {m.group(1): m.group(2) for m in _OVERRIDDEN.finditer(log)}

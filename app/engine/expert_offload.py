"""Keep a mixture-of-experts model's routed experts in RAM while the rest of their layers runs on
the GPU: llama.cpp's ``--n-cpu-moe N`` / ``--cpu-moe``, which are tensor buffer-type overrides
(``llama_model_params.tensor_buft_overrides``: ``{pattern, buft}`` pairs ending in ``{NULL,
NULL}``, include/llama.h). llama-cpp-python declares that field as a bare pointer and binds
neither the struct nor ``ggml_backend_cpu_buffer_type``, so both are made here. Runs only inside
a model process."""

from __future__ import annotations

import ctypes
from typing import Any

from app.core.advice.placement import OUTPUT_HERE_PATTERN, expert_override_pattern


class _BuftOverride(ctypes.Structure):
    """include/llama.h ``struct llama_model_tensor_buft_override``."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _cpu_buffer_type() -> int:
    """``ggml_backend_cpu_buffer_type()``: the handle llama.cpp compares an override with to keep a
    tensor in (mapped or pinned) host memory. Exported by ggml-base and looked up through the
    libllama llama-cpp-python loaded (which depends on it): that is the build in use, also when
    ``LLAMA_CPP_LIB_PATH`` points at another one (llama_cpp._ggml would load the bundled copy)."""
    from llama_cpp.llama_cpp import _lib

    fn = _lib.ggml_backend_cpu_buffer_type
    fn.restype, fn.argtypes = ctypes.c_void_p, []
    handle = fn()
    if not handle:
        raise RuntimeError("llama.cpp has no CPU buffer type")
    return int(handle)


def keep_experts_in_ram(model_params: Any, moe_cpu_layers: int, output_here: bool = False) -> object | None:
    """Point ``model_params`` at overrides keeping the experts of the first ``moe_cpu_layers``
    layers in RAM, and with ``output_here`` the output matmul's weights (placement.OUTPUT_HERE_PATTERN).
    Returns what must stay alive until the model is loaded (llama.cpp reads the array and its
    strings during ``llama_model_load_from_file``); None when nothing is overridden."""
    patterns = [
        p
        for p in (expert_override_pattern(moe_cpu_layers), OUTPUT_HERE_PATTERN if output_here else None)
        if p
    ]
    if not patterns:
        return None
    table = (_BuftOverride * (len(patterns) + 1))()
    texts = [p.encode() for p in patterns]
    cpu = _cpu_buffer_type()
    for i, text in enumerate(texts):
        table[i].pattern, table[i].buft = text, cpu
    model_params.tensor_buft_overrides = ctypes.cast(table, ctypes.c_void_p)
    return (table, texts)

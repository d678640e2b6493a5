"""A load that does not fit says what did not fit, how much it needed and how much was free:
llama.cpp's own log lines (their formats from ggml-cuda.cu, ggml-alloc.c, llama-kv-cache.cpp,
llama-model.cpp, llama-context.cpp) turned into one sentence."""

from __future__ import annotations

from app.core.units import GIB
from app.engine.llama_log import alloc_failure, device_error, out_of_memory_message

KV_OOM = """llama_context: n_ctx = 131072
ggml_backend_cuda_buffer_type_alloc_buffer: allocating 16384.00 MiB on device 0: cudaMalloc failed: out of memory
alloc_tensor_range: failed to allocate CUDA0 buffer of size 17179869184
llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache
"""
WEIGHTS_OOM = """load_tensors: offloading 32 repeating layers to GPU
ggml_backend_cuda_buffer_type_alloc_buffer: allocating 7605.34 MiB on device 0: cudaMalloc failed: out of memory
alloc_tensor_range: failed to allocate CUDA0 buffer of size 7974772736
llama_model_load: error loading model: unable to allocate CUDA0 buffer
llama_model_load_from_file_impl: failed to load model
"""
COMPUTE_OOM = """llama_context:  CUDA_Host  output buffer size =     0.49 MiB
ggml_gallocr_reserve_n_impl: failed to allocate CUDA0 buffer of size 270532608
graph_reserve: failed to allocate compute buffers
llama_init_from_model: failed to initialize the context: failed to allocate compute pp buffers
"""


def test_kv_cache_out_of_memory_names_sizes_and_free_vram() -> None:
    f = alloc_failure(KV_OOM)
    assert f is not None and (f.buffer, f.what, f.needed_bytes) == ("CUDA0", "the KV cache", 16 * GIB)
    message, hint = out_of_memory_message(f, 3 * GIB)
    assert (
        message == "CUDA out of memory while allocating the KV cache: 16.0 GiB needed, 3.00 GiB free on CUDA0"
    )
    assert "shorter context" in hint and "tailorlm advise" in hint


def test_weights_and_compute_buffers_are_told_apart() -> None:
    weights, compute = alloc_failure(WEIGHTS_OOM), alloc_failure(COMPUTE_OOM)
    assert weights is not None and weights.what == "the model weights" and weights.needed_bytes == 7974772736
    assert compute is not None and compute.what == "the compute buffers" and compute.device_error is None
    assert "fewer layers" in out_of_memory_message(weights, None)[1]


def test_ram_failures_speak_of_available_ram() -> None:
    f = alloc_failure("alloc_tensor_range: failed to allocate CPU buffer of size 185000000000\n"
                      "llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache\n")  # fmt: skip
    assert f is not None and f.in_ram
    assert out_of_memory_message(f, 2 * GIB)[0].startswith(
        "Out of memory (RAM) while allocating the KV cache"
    )


def test_a_clean_log_has_no_failure_and_an_abort_names_the_cuda_error() -> None:
    assert alloc_failure("load_tensors:        CUDA0 model buffer size =  4403.49 MiB\n") is None
    assert (
        device_error("ggml_cuda_error: CUDA error: out of memory\n  current device: 0\n") == "out of memory"
    )

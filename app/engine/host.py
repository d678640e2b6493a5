"""Facts about this process and its machine, read from inside a child: its memory, the cores
llama.cpp should use, and how much memory was free when a load failed."""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
import types
from typing import Any


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set of this process."""
    cur = peak = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        import resource

        peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return cur, peak


def physical_cores() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


def ram_available_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def ggml_function(name: str, restype: Any, *argtypes: Any) -> Any:
    """A C function of the llama.cpp build in use, with a fresh prototype (the shared CDLL's
    attributes stay as llama-cpp-python set them). libllama's handle resolves libggml's symbols
    too; llama_cpp._ggml would not do here, as it ignores LLAMA_CPP_LIB_PATH (llama-cpp-python
    0.3.36) and finds no library then. Raises ImportError/OSError without llama-cpp-python,
    AttributeError for a symbol the build lacks."""
    from llama_cpp import llama_cpp as lib_module

    return ctypes.CFUNCTYPE(restype, *argtypes)((name, lib_module._lib))


def device_free_bytes(name: str) -> int | None:
    """Free memory of the ggml device ``name`` ("CUDA0") as its backend reports it (cudaMemGetInfo).
    Asked only after a failed load: this process already holds the device's context."""
    try:
        by_name = ggml_function("ggml_backend_dev_by_name", ctypes.c_void_p, ctypes.c_char_p)
        sz = ctypes.POINTER(ctypes.c_size_t)
        memory = ggml_function("ggml_backend_dev_memory", None, ctypes.c_void_p, sz, sz)
    except (ImportError, AttributeError, OSError):
        return None
    dev = by_name(name.encode())
    if not dev:
        return None
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    memory(dev, ctypes.byref(free), ctypes.byref(total))
    return int(free.value) if total.value else None


def llama_bindings() -> Any:
    """llama-cpp-python's ctypes bindings (``llama_cpp.llama_cpp``: libllama loaded, as
    LLAMA_CPP_LIB_PATH says, its functions and structs declared) without running the package's
    ``__init__``, which imports the high-level ``Llama``, its chat formats, jinja2 and numpy: 0.02 s
    instead of 0.11 s. Only for a child that needs nothing else (the quantizer's): after it,
    ``llama_cpp`` in that process is a bare package holding the bindings."""
    if "llama_cpp" not in sys.modules:
        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("llama-cpp-python is not installed")
        package = types.ModuleType("llama_cpp")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__, package.__file__ = spec, spec.origin
        sys.modules["llama_cpp"] = package
    return importlib.import_module("llama_cpp.llama_cpp")

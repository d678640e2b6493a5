"""What the installed llama.cpp build can offload to: llama_supports_gpu_offload() and the
ggml backend devices of the build (CUDA, Metal, Vulkan …), asked without side effects.

:func:`detect_offload` loads libllama, so it runs in the probe child (:mod:`app.core.machine.probe`),
never in the window's process: a build that crashes on this CPU, or a CUDA registry that takes
seconds to start, then costs the probe and not the app."""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator
from dataclasses import dataclass

# enum ggml_backend_dev_type, ggml/include/ggml-backend.h: CPU, GPU, IGPU, ACCEL.
_GGML_DEVICE_KINDS = ("cpu", "gpu", "igpu", "accel")


@dataclass(frozen=True)
class BackendDevice:
    """One device of the installed llama.cpp build (ggml_backend_dev_*)."""

    name: str  # "CUDA0", "Metal", "Vulkan0", "CPU"
    description: str
    backend: str  # the ggml registry: "CUDA", "Metal", "Vulkan", "CPU", "BLAS"
    kind: str  # "cpu" | "gpu" | "igpu" | "accel"
    memory_total_bytes: int | None = None  # asked of Metal only: see _ggml_devices
    memory_free_bytes: int | None = None


@dataclass(frozen=True)
class OffloadSupport:
    supported: bool  # plans may put layers on a GPU (the build can, or an override assumes it)
    build_supports_gpu: bool  # the installed build has a GPU device of its own (see detect_offload)
    installed: bool  # llama-cpp-python imports
    backends: tuple[str, ...] = ()  # GPU backends of the build: "CUDA", "Metal", "Vulkan"
    devices: tuple[BackendDevice, ...] = ()
    llama_cpp_version: str | None = None
    rpc: bool = False  # the build has llama.cpp's RPC backend: it can use workers (tailorlm worker)


@contextlib.contextmanager
def _quiet_llama_logs() -> Iterator[None]:
    # llama-cpp-python prints every ggml log line to stderr while its logger is NOTSET
    # (llama_cpp/_logger.py); the CUDA registry logs "ggml_cuda_init: found 1 CUDA devices".
    logger = logging.getLogger("llama-cpp-python")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _libggml() -> ctypes.CDLL:
    """The handle on libggml that llama-cpp-python keeps — or, when it was pointed at another
    build with LLAMA_CPP_LIB_PATH (which its ``_ggml`` module ignores), libllama's own handle:
    dlsym on it also finds the ggml symbols libllama links against."""
    try:
        from llama_cpp import _ggml

        lib: ctypes.CDLL = _ggml.libggml
        lib.ggml_backend_dev_count  # noqa: B018 - the symbol must be there
        return lib
    except (ImportError, AttributeError, OSError):
        from llama_cpp import llama_cpp as bindings

        return bindings._lib  # type: ignore[no-any-return]


def _ggml_devices() -> tuple[BackendDevice, ...]:
    """The build's devices through ggml's C API; llama-cpp-python binds none of these functions."""
    try:
        lib = _libggml()
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        # fresh prototypes, so the shared CDLL's attributes are left as llama-cpp-python set them
        dev_count = ctypes.CFUNCTYPE(sz)(("ggml_backend_dev_count", lib))
        dev_get = ctypes.CFUNCTYPE(vp, sz)(("ggml_backend_dev_get", lib))
        dev_name = ctypes.CFUNCTYPE(cp, vp)(("ggml_backend_dev_name", lib))
        dev_desc = ctypes.CFUNCTYPE(cp, vp)(("ggml_backend_dev_description", lib))
        dev_type = ctypes.CFUNCTYPE(ctypes.c_int, vp)(("ggml_backend_dev_type", lib))
        dev_reg = ctypes.CFUNCTYPE(vp, vp)(("ggml_backend_dev_backend_reg", lib))
        reg_name = ctypes.CFUNCTYPE(cp, vp)(("ggml_backend_reg_name", lib))
        dev_memory = ctypes.CFUNCTYPE(None, vp, ctypes.POINTER(sz), ctypes.POINTER(sz))(
            ("ggml_backend_dev_memory", lib)
        )
    except (ImportError, AttributeError, OSError):
        return ()
    devices = []
    for i in range(dev_count()):
        dev = dev_get(i)
        kind = dev_type(dev)
        backend = (reg_name(dev_reg(dev)) or b"?").decode()
        total = free = None
        if backend == "Metal":
            # Metal reports recommendedMaxWorkingSetSize, the exact Apple GPU share. Not asked of
            # CUDA: ggml_backend_cuda_device_get_memory calls cudaMemGetInfo, which creates a CUDA
            # context (~530 MiB of VRAM on an H100, llama-cpp-facts.md) that would live as long as
            # this process. NVML and sysfs tell free VRAM without that.
            f, t = sz(), sz()
            dev_memory(dev, ctypes.byref(f), ctypes.byref(t))
            total, free = int(t.value) or None, int(f.value) or None
        devices.append(
            BackendDevice(
                name=(dev_name(dev) or b"?").decode(),
                description=(dev_desc(dev) or b"").decode(errors="replace"),
                backend=backend,
                kind=_GGML_DEVICE_KINDS[kind] if 0 <= kind < len(_GGML_DEVICE_KINDS) else "unknown",
                memory_total_bytes=total,
                memory_free_bytes=free,
            )
        )
    return tuple(devices)


def detect_offload() -> tuple[OffloadSupport, tuple[str, ...]]:
    """Whether the installed llama.cpp build can offload layers, and to which backends."""
    with _quiet_llama_logs():
        try:
            import llama_cpp
        except (ImportError, OSError, RuntimeError) as e:  # RuntimeError: its library failed to load
            missing = isinstance(e, ImportError)
            why = "llama-cpp-python is not installed" if missing else f"llama-cpp-python failed to load ({e})"
            return OffloadSupport(False, False, False), (f"{why}: nothing can run until it is.",)
        devices = _ggml_devices()
        rpc = bool(llama_cpp.llama_supports_rpc())
        # llama_supports_gpu_offload() is also true for a CPU-only build with the RPC backend
        # (src/llama.cpp): a GPU of this machine is a GPU device of the build, workers aside.
        gpu = (
            any(d.kind in ("gpu", "igpu") and d.backend != "RPC" for d in devices)
            if devices
            else (bool(llama_cpp.llama_supports_gpu_offload()) and not rpc)
        )
    backends = tuple(
        dict.fromkeys(d.backend for d in devices if d.kind in ("gpu", "igpu") and d.backend != "RPC")
    )
    version = str(getattr(llama_cpp, "__version__", "")) or None
    return OffloadSupport(gpu, gpu, True, backends, devices, version, rpc), ()

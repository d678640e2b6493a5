"""``tailorlm worker``: lend this machine's memory to another TailorLM (or llama.cpp) over
llama.cpp's RPC backend, from the very llama.cpp build the engine loads.

The server is ggml's own (``ggml_backend_rpc_start_server``, reached through the RPC registry of the
installed libggml, built with ``GGML_RPC=on``), run on one device: the first GPU of the build, else
the CPU. ``--mem`` caps what clients may allocate on the CPU device: this process wraps the CPU
buffer type's ``alloc_buffer`` (and each buffer's ``free_buffer``) to keep the sum of live buffers
under the cap, refusing the rest (the client then reports "unable to allocate RPC0 buffer"), and
makes the device report ``cap - used`` as its free memory, which is what clients plan with
(llama.cpp splits layers in proportion to the free memory of its devices). The structures patched
are ggml's internal ones of the same build (``ggml-backend-impl.h``): function tables in writable
static storage, changed only inside this process, which does nothing else.

The RPC protocol has no authentication: the worker binds 127.0.0.1 unless asked otherwise with an
explicit flag, and then warns (llama.cpp's README calls rpc-server insecure).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.core.errors import WorkerError
from app.core.machine.workers import Endpoint
from app.engine.host import ggml_function as _fn

_vp, _sz = ctypes.c_void_p, ctypes.c_size_t
# struct ggml_backend_device_i / ggml_backend_buffer_type_i / ggml_backend_buffer (the same build's
# ggml-backend-impl.h): get_memory is the device table's 3rd pointer, alloc_buffer the buffer type's
# 2nd, free_buffer a buffer's 1st.
_DEV_GET_MEMORY = 2
_BUFT_ALLOC = 1
_GET_MEMORY = ctypes.CFUNCTYPE(None, _vp, ctypes.POINTER(_sz), ctypes.POINTER(_sz))
_ALLOC = ctypes.CFUNCTYPE(_vp, _vp, _sz)
_FREE = ctypes.CFUNCTYPE(None, _vp)
_DEV_TYPE_CPU = 0


@dataclass(frozen=True)
class WorkerOptions:
    host: str = "127.0.0.1"
    port: int = 50052
    mem_bytes: int | None = None  # cap on the CPU device; None = what the machine has free
    threads: int = 0  # 0 = physical cores
    device: str = ""  # ggml device name ("CPU", "CUDA0"); "" = first GPU, else CPU
    cache_dir: str | None = None  # llama.cpp's -c: keep large tensors by hash, to reload faster


class _MemoryCap:
    """Keeps the CPU device's live buffers under ``cap`` bytes and reports ``cap - used`` as free."""

    def __init__(self, dev: int, cap: int) -> None:
        self.cap, self.used, self.lock = cap, 0, threading.Lock()
        self.sizes: dict[int, int] = {}
        buft = _fn("ggml_backend_cpu_buffer_type", _vp)()
        self._buft_table = (_vp * 6).from_address(buft)
        self._dev_table = (_vp * 15).from_address(dev)
        self._alloc = _ALLOC(self._buft_table[_BUFT_ALLOC])
        self._frees: dict[int, ctypes._CFuncPtr] = {}
        # the C side calls these: they must live as long as the process
        self._alloc_cb, self._free_cb, self._mem_cb = (
            _ALLOC(self.alloc),
            _FREE(self.free),
            _GET_MEMORY(self.memory),
        )
        self._buft_table[_BUFT_ALLOC] = ctypes.cast(self._alloc_cb, _vp).value
        self._dev_table[_DEV_GET_MEMORY] = ctypes.cast(self._mem_cb, _vp).value

    def alloc(self, buft: int, size: int) -> int | None:
        with self.lock:
            if self.used + size > self.cap:
                sys.stderr.write(f"worker: refused a {size / 2**20:.1f} MiB buffer: {self.used / 2**20:.1f} of "
                                 f"{self.cap / 2**20:.1f} MiB in use\n")  # fmt: skip
                return None
            buf = self._alloc(buft, size)
            if buf:
                table = (_vp * 1).from_address(buf)
                self._frees[buf] = _FREE(table[0])
                table[0] = ctypes.cast(self._free_cb, _vp).value
                self.sizes[buf] = size
                self.used += size
            return int(buf) if buf else None

    def free(self, buf: int) -> None:
        with self.lock:
            self.used -= self.sizes.pop(buf, 0)
            original = self._frees.pop(buf, None)
        if original:
            original(buf)

    def memory(self, dev: int, free: ctypes._Pointer, total: ctypes._Pointer) -> None:  # type: ignore[type-arg]
        with self.lock:
            free[0] = max(0, self.cap - self.used)
            total[0] = self.cap


def serve(opts: WorkerOptions, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve until the process ends (it returns only if the server could not start); ``announce``
    gets one line saying what is lent, where, once the server is about to listen."""
    try:
        reg = _fn("ggml_backend_reg_by_name", _vp, ctypes.c_char_p)(b"RPC")
    except (ImportError, OSError, RuntimeError) as e:
        raise WorkerError(f"llama-cpp-python could not be loaded ({e}).") from e
    if not reg:
        raise WorkerError(
            "This llama.cpp build has no RPC backend.",
            hint='Reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=on" (scripts/run.sh does).',
        )
    start = _fn("ggml_backend_reg_get_proc_address", _vp, _vp, ctypes.c_char_p)(
        reg, b"ggml_backend_rpc_start_server"
    )
    if not start:
        raise WorkerError("This llama.cpp build's RPC backend has no server.")
    dev = _pick_device(opts.device)
    dev_type = _fn("ggml_backend_dev_type", ctypes.c_int, _vp)(dev)
    name = _fn("ggml_backend_dev_name", ctypes.c_char_p, _vp)(dev).decode()
    cap = None
    if opts.mem_bytes is not None:
        if dev_type != _DEV_TYPE_CPU:
            raise WorkerError(f"--mem caps the CPU device; {name} reports its own free memory.")
        cap = _MemoryCap(dev, opts.mem_bytes)
    from app.engine.host import physical_cores

    threads = opts.threads or physical_cores()
    endpoint = str(Endpoint(opts.host, opts.port))
    if announce:
        limit = f"up to {opts.mem_bytes / 2**30:.2f} GiB" if cap else "its free memory"
        announce(f"TailorLM worker: lending {name} ({limit}, {threads} threads) at {endpoint}")
    run = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, _sz, _sz, ctypes.POINTER(_vp))(start)
    devices = (_vp * 1)(dev)
    cache = opts.cache_dir.encode() if opts.cache_dir else None
    run(endpoint.encode(), cache, threads, 1, devices)  # returns only when it could not listen
    del cap
    raise WorkerError(f"The worker could not listen at {endpoint} (is the port in use?).")


def _pick_device(wanted: str) -> int:
    count = _fn("ggml_backend_dev_count", _sz)()
    get = _fn("ggml_backend_dev_get", _vp, _sz)
    kind = _fn("ggml_backend_dev_type", ctypes.c_int, _vp)
    dev_name = _fn("ggml_backend_dev_name", ctypes.c_char_p, _vp)
    devs = [get(i) for i in range(count)]
    names = [dev_name(d).decode() for d in devs]
    if wanted:
        for d, n in zip(devs, names, strict=True):
            if n.lower() == wanted.lower():
                return int(d)
        raise WorkerError(f"This build has no device {wanted!r}; it has {', '.join(names)}.")
    gpus = [d for d in devs if kind(d) not in (0, 3)]  # CPU and ACCEL are not lent first
    cpu = [d for d in devs if kind(d) == _DEV_TYPE_CPU]
    if not (gpus or cpu):
        raise WorkerError("This build has no device to lend.")
    return int((gpus or cpu)[0])

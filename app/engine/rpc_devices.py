"""Workers as devices of the model process: register each planned worker with llama.cpp's RPC
backend and hand the load exactly the planned devices and split (``llama_model_params.devices``,
``tensor_split``), since llama-cpp-python 0.3.36 has no ``rpc_servers`` option any more.

Each worker is asked in plain Python first (:func:`app.core.machine.workers.probe_worker`): the C
client aborts the process on a worker that does not answer. Once a worker is registered it stays
in ggml's device list for the life of the process, so every load names its devices explicitly: a
worker that died since is simply not named again (llama.cpp's default would try every one).
"""

from __future__ import annotations

import ctypes
from typing import Any

from app.core.errors import WorkerError
from app.core.machine.workers import parse_endpoints, probe_worker
from app.engine.host import ggml_function as _fn

_vp = ctypes.c_void_p
_registered: dict[str, list[int]] = {}  # endpoint → its ggml devices, in this process
_DEV_GPU, _DEV_IGPU = 1, 2  # enum ggml_backend_dev_type


def _register(endpoint: str) -> list[int]:
    ep = parse_endpoints(endpoint)[0]
    found = probe_worker(ep, timeout_s=5.0, rounds=1)
    if not found.usable:
        raise WorkerError(f"Worker {ep} {found.error}.",
                          hint="Check that `tailorlm worker` runs there, or plan without it.")  # fmt: skip
    reg = _fn("ggml_backend_reg_by_name", _vp, ctypes.c_char_p)(b"RPC")
    if not reg:
        raise WorkerError("This llama.cpp build has no RPC backend, so it cannot use workers.",
                          hint='Reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=on".')  # fmt: skip
    add = _fn("ggml_backend_reg_get_proc_address", _vp, _vp, ctypes.c_char_p)(
        reg, b"ggml_backend_rpc_add_server"
    )
    server = ctypes.CFUNCTYPE(_vp, ctypes.c_char_p)(add)(str(ep).encode())
    if not server:
        raise WorkerError(f"Worker {ep} has no devices.")
    _fn("ggml_backend_register", None, _vp)(server)
    count = _fn("ggml_backend_reg_dev_count", ctypes.c_size_t, _vp)(server)
    get = _fn("ggml_backend_reg_dev_get", _vp, _vp, ctypes.c_size_t)
    return [int(get(server, i)) for i in range(count)]


def _local_gpus() -> list[int]:
    """The build's own GPUs, in registry order (llama.cpp's default list minus the workers)."""
    count = _fn("ggml_backend_dev_count", ctypes.c_size_t)()
    get = _fn("ggml_backend_dev_get", _vp, ctypes.c_size_t)
    kind = _fn("ggml_backend_dev_type", ctypes.c_int, _vp)
    reg_of = _fn("ggml_backend_dev_backend_reg", _vp, _vp)
    reg_name = _fn("ggml_backend_reg_name", ctypes.c_char_p, _vp)
    out = []
    for i in range(count):
        dev = get(i)
        if kind(dev) in (_DEV_GPU, _DEV_IGPU) and reg_name(reg_of(dev)) != b"RPC":
            out.append(int(dev))
    return out


def has_local_gpu() -> bool:
    return bool(_local_gpus())


def attach_workers(mp: Any, workers: tuple[str, ...], split: tuple[float, ...],
                   max_devices: int) -> tuple[object, ...]:  # fmt: skip
    """Set ``mp.devices`` (workers' devices first, as llama.cpp orders them, then this machine's
    GPUs) and ``mp.tensor_split`` when a worker is planned or was ever registered here. Returns the
    C arrays, which must outlive the load."""
    if not workers and not _registered:
        return ()
    devices: list[int] = []
    for endpoint in dict.fromkeys(workers):
        if endpoint not in _registered:
            _registered[endpoint] = _register(endpoint)
        devices += _registered[endpoint]
    devices += _local_gpus()
    table = (_vp * (len(devices) + 1))(*devices, None)
    mp.devices = ctypes.addressof(table)  # a void* field in llama-cpp-python's binding
    keep: tuple[object, ...] = (table,)
    if split:
        if len(split) > max_devices:
            raise WorkerError(f"{len(split)} devices: this build handles at most {max_devices}.")
        shares = (ctypes.c_float * max_devices)(*split)
        mp.tensor_split = ctypes.cast(shares, ctypes.POINTER(ctypes.c_float))
        keep += (shares,)
    return keep

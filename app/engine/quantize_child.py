"""The quantizer's child process (:func:`app.engine.quantize.quantize` starts it): one
:class:`~app.engine.protocol.Quantize` request on stdin, ``llama_model_quantize`` as llama-quantize's
main calls it, each tensor line of llama.cpp's log sent back as a progress message. It imports no
more than that needs (llama-cpp-python's bindings without its package: no numpy), and imports it
while the parent checks the request: for a small model the start is a tenth of the whole
quantization.

Run as ``python -m app.engine.quantize_child``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.errors import ConversionError
from app.engine import protocol as P
from app.engine.child import serve_one_job
from app.engine.host import llama_bindings

KEEP_FLAG = "--keep"  # the request will carry tensor overrides: import their type check early
_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_LOG_LINES_KEPT = 40  # the child's log tail, for a failure's message


def _ftype(L: Any, name: str) -> int:
    attr = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    return int(getattr(L, attr))


def _child(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    """Quantize as ``request`` says; each tensor line of llama.cpp's log becomes a progress message,
    the rest goes to stderr (the parent keeps its tail)."""
    import ctypes

    L = llama_bindings()
    if not isinstance(request, P.Quantize):
        raise ConversionError(f"The quantizer got a {request.kind} request.")
    partial = bytearray()  # llama.cpp logs a tensor's line in several calls
    tail: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        partial.extend(text)
        while (end := partial.find(b"\n")) >= 0:
            line = partial[:end].decode("utf-8", "replace")
            del partial[: end + 1]
            if m := _TENSOR.match(line):
                send(P.QuantizeProgress(fraction=int(m.group(1)) / int(m.group(2)), tensor=m.group(3)))
            else:
                sys.stderr.write(line + "\n")
                tail.append(line)
                del tail[:-_LOG_LINES_KEPT]

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    params = L.llama_model_quantize_default_params()
    params.nthread = request.n_threads
    params.ftype = _ftype(L, request.to)
    params.allow_requantize = True  # a quantized source is allowed; the parent warns about it
    keep_alive = _c_overrides(L, params, request)  # the arrays must outlive the call
    rc = int(L.llama_model_quantize(request.source.encode(), request.output.encode(), ctypes.byref(params)))
    del keep_alive
    if rc != 0:
        return P.Failed(stage=request.kind, message="\n".join(tail))
    return P.Quantized(output=request.output)


def _c_overrides(L: Any, params: Any, request: P.Quantize) -> list[Any]:
    """Fill ``params`` as llama-quantize's main does from ``--imatrix`` and ``--tensor-type``: the
    importance matrix (the parent's values file, see :mod:`app.engine.quantize`), the four
    ``quantize.imatrix.*`` keys written into the output, and the tensor-type patterns; each array
    ends with an empty terminator. Returns what must stay alive until ``llama_model_quantize``
    returns."""
    import ctypes

    alive: list[Any] = []
    if request.imatrix_values:
        raw = Path(request.imatrix_values).read_bytes()
        total = sum(n for _, n in request.imatrix_entries)
        if len(raw) != 4 * total:
            raise ConversionError("The importance matrix handed to the quantizer is incomplete.",
                                  hint="Nothing was kept; try again.")  # fmt: skip
        values = (ctypes.c_float * total).from_buffer_copy(raw)
        data = (L.llama_model_imatrix_data * (len(request.imatrix_entries) + 1))()
        start = 0
        for i, (name, n) in enumerate(request.imatrix_entries):
            data[i].name, data[i].size = name.encode(), n
            data[i].data = ctypes.cast(ctypes.byref(values, 4 * start), ctypes.POINTER(ctypes.c_float))
            start += n
        params.imatrix = data
        alive += [data, values]
        file, dataset, entries, chunks = request.imatrix_kv
        kvs: list[tuple[str, int, Any]] = [("quantize.imatrix.file", L.LLAMA_KV_OVERRIDE_TYPE_STR, file)]
        if dataset:
            kvs.append(("quantize.imatrix.dataset", L.LLAMA_KV_OVERRIDE_TYPE_STR, dataset))
        kvs.append(("quantize.imatrix.entries_count", L.LLAMA_KV_OVERRIDE_TYPE_INT, entries))
        if chunks > 0:
            kvs.append(("quantize.imatrix.chunks_count", L.LLAMA_KV_OVERRIDE_TYPE_INT, chunks))
        overrides = (L.llama_model_kv_override * (len(kvs) + 1))()  # zeroed: the last one's key is ""
        for o, (key, tag, value) in zip(overrides, kvs, strict=False):
            o.key, o.tag = key.encode(), tag
            if tag == L.LLAMA_KV_OVERRIDE_TYPE_STR:
                o.value.val_str = value.encode()[:127]  # strncpy(…, 127): at most 127 bytes and a NUL
            else:
                o.value.val_i64 = value
        params.kv_overrides = overrides
        alive.append(overrides)
    if request.keep:
        from app.engine.ggml_quant import ggml_type  # ggml's own type numbers, checked against its traits

        tt = (L.llama_model_tensor_override * (len(request.keep) + 1))()
        for i, (pattern, type_name) in enumerate(request.keep):
            tt[i].pattern, tt[i].type = pattern.encode(), ggml_type(type_name).type_id
        tt[len(request.keep)].pattern, tt[len(request.keep)].type = None, L.GGML_TYPE_COUNT
        params.tt_overrides = tt
        alive.append(tt)
    return alive


if __name__ == "__main__":
    # llama.cpp's bindings before the request: the parent starts this child before it checks the
    # source, so loading them runs while it does; with tensor overrides, so does numpy (their types
    # are checked against ggml's traits)
    llama_bindings()
    if KEEP_FLAG in sys.argv[1:]:
        import app.engine.ggml_quant  # noqa: F401
    serve_one_job(_child)

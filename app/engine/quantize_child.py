"""The quantizer's child process (:func:`app.engine.quantize.quantize` starts it): one
:class:`~app.engine.protocol.Quantize` request on stdin, ``llama_model_quantize`` as llama-quantize's
main calls it, each tensor line of llama.cpp's log sent back as a progress message. It imports no
more than that needs: it starts while the parent checks the request, and for a small model the
start is a tenth of the whole quantization.

Run as ``python -m app.engine.quantize_child``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from app.core.errors import ConversionError
from app.engine import protocol as P
from app.engine.child import serve_one_job

_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_LOG_LINES_KEPT = 40  # the child's log tail, for a failure's message


def _ftype(name: str) -> int:
    import llama_cpp

    attr = "LLAMA_FTYPE_ALL_F32" if name == "F32" else f"LLAMA_FTYPE_MOSTLY_{name}"
    return int(getattr(llama_cpp, attr))


def _child(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    """Quantize as ``request`` says; each tensor line of llama.cpp's log becomes a progress message,
    the rest goes to stderr (the parent keeps its tail)."""
    import ctypes

    import llama_cpp

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

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = request.n_threads
    params.ftype = _ftype(request.to)
    params.allow_requantize = True  # a quantized source is allowed; the parent warns about it
    keep_alive = _c_overrides(llama_cpp, params, request)  # the arrays must outlive the call
    rc = int(
        llama_cpp.llama_model_quantize(request.source.encode(), request.output.encode(), ctypes.byref(params))
    )
    del keep_alive
    if rc != 0:
        return P.Failed(stage=request.kind, message="\n".join(tail))
    return P.Quantized(output=request.output)


def _c_overrides(L: Any, params: Any, request: P.Quantize) -> list[Any]:
    """Fill ``params`` as llama-quantize's main does from ``--imatrix`` and ``--tensor-type``: the
    importance matrix (``sums / counts`` per entry), the four ``quantize.imatrix.*`` keys written
    into the output, and the tensor-type patterns; each array ends with an empty terminator.
    Returns what must stay alive until ``llama_model_quantize`` returns."""
    import ctypes

    from app.core.model.imatrix_file import imatrix_kv, read_imatrix
    from app.engine.ggml_quant import ggml_type  # ggml's own type numbers, checked against its traits

    alive: list[Any] = []
    if request.imatrix:
        matrix = read_imatrix(request.imatrix)
        values = matrix.values()
        data = (L.llama_model_imatrix_data * (len(values) + 1))()
        for i, (name, v) in enumerate(values.items()):
            data[i].name, data[i].size = name.encode(), v.size
            data[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        params.imatrix = data
        alive += [data, values]
        kv = imatrix_kv(request.imatrix_name or request.imatrix, matrix)
        kvs: list[tuple[str, int, Any]] = [("quantize.imatrix.file", L.LLAMA_KV_OVERRIDE_TYPE_STR, kv.file)]
        if kv.dataset is not None:
            kvs.append(("quantize.imatrix.dataset", L.LLAMA_KV_OVERRIDE_TYPE_STR, kv.dataset))
        kvs.append(("quantize.imatrix.entries_count", L.LLAMA_KV_OVERRIDE_TYPE_INT, kv.entries))
        if kv.chunks > 0:
            kvs.append(("quantize.imatrix.chunks_count", L.LLAMA_KV_OVERRIDE_TYPE_INT, kv.chunks))
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
        tt = (L.llama_model_tensor_override * (len(request.keep) + 1))()
        for i, (pattern, type_name) in enumerate(request.keep):
            tt[i].pattern, tt[i].type = pattern.encode(), ggml_type(type_name).type_id
        tt[len(request.keep)].pattern, tt[len(request.keep)].type = None, L.GGML_TYPE_COUNT
        params.tt_overrides = tt
        alive.append(tt)
    return alive


if __name__ == "__main__":
    serve_one_job(_child)

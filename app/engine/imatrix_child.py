"""The importance matrix's child: ``python -m app.engine.imatrix_child``, one
:class:`ComputeImatrix` request on stdin, :class:`ImatrixProgress` lines and one
:class:`ImatrixDone` (or ``Failed``) on its private stdout.

The method is llama-imatrix's (``tools/imatrix/imatrix.cpp`` of the vendored llama.cpp): the text
is cut into chunks of ``n_ctx`` tokens, each starting with BOS when the vocabulary adds one, and
every chunk is decoded from an empty cache with logits for all its tokens (so the last layer runs
on every row). ggml's scheduler calls back for every matrix multiplication of the graph
(``cb_eval``); for those whose weight is a layer's (``blk.*``) and whose input has at least 16 rows,
the squared input activations are summed per column — per expert, from the router's choices, for
``MUL_MAT_ID``. The sums and the row counts are written in llama-imatrix's GGUF layout
(:mod:`app.core.model.imatrix_file`), which ``llama-quantize --imatrix`` reads.

The callback runs Python for each node of the graph; the per-node cost is a few microseconds and
the sums are numpy reductions over the batch, measured against llama-imatrix in
``tests/bench/imatrix_speed.py``.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# llama.cpp's libraries load before numpy's: with a CUDA build of llama.cpp and numpy 2.5 (the H200
# machine's environment) the other order made llama_model_load_from_file crash (SIGSEGV, measured
# 2026-12-03 by tests/gpu/imatrix_device.sh); llama_cpp first worked.
import llama_cpp  # noqa: F401
import numpy as np

from app.core.errors import EngineError, ModelReadError, TailorError
from app.core.model.imatrix_file import Imatrix, ImatrixEntry, write_imatrix
from app.engine import protocol as P
from app.engine.child import serve_one_job
from app.engine.errors import TextTooShortError
from app.engine.host import physical_cores

MIN_ROWS = 16  # llama-imatrix skips multiplications with fewer input rows (single-token decodes)
_GGML_F32 = 0


class _GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor`` of ggml/include/ggml.h (GGML_MAX_DIMS 4, GGML_MAX_SRC 10,
    GGML_MAX_OP_PARAMS 64, GGML_MAX_NAME 64), the fields read here and the ones before them."""


_GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_GgmlTensor) * 10),
    ("view_src", ctypes.c_void_p),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


def weight_name(name: str) -> str:
    """The weight behind a node's source name: the scheduler's copies are ``BACKEND#name#n``."""
    if "#" in name:
        return name.split("#", 2)[1]
    return name


class Collector:
    """Sums of squared activations per weight, filled from ggml's eval callback."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        lib.ggml_op_name.restype = ctypes.c_char_p
        lib.ggml_op_name.argtypes = [ctypes.c_int]
        lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
        lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        self._op_names: dict[int, str] = {}
        self.sums: dict[str, np.ndarray] = {}  # float64 (n_mat, ne0)
        self.counts: dict[str, np.ndarray] = {}  # int64 (n_mat,)
        self.error: BaseException | None = None
        self.callback = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p)(
            self._on_node
        )

    def _op(self, op: int) -> str:
        name = self._op_names.get(op)
        if name is None:
            name = self._op_names[op] = (self.lib.ggml_op_name(op) or b"").decode()
        return name

    def _on_node(self, t_ptr: int, ask: bool, user: int) -> bool:
        try:
            t = ctypes.cast(t_ptr, ctypes.POINTER(_GgmlTensor)).contents
            op = self._op(t.op)
            if ask:
                return op == "MUL_MAT_ID" or (op == "MUL_MAT" and self._wanted(t))
            if op == "MUL_MAT_ID":
                self._collect_experts(t)
            elif op == "MUL_MAT":
                self._collect(t)
            return True
        except BaseException as exc:  # a C callback must not raise: keep it, stop the graph
            self.error = exc
            return False

    @staticmethod
    def _wanted(t: _GgmlTensor) -> bool:
        src0, src1 = t.src[0].contents, t.src[1].contents
        name = weight_name(src0.name.decode("utf-8", "replace"))
        return src1.ne[1] >= MIN_ROWS and src1.type == _GGML_F32 and name.startswith("blk.")

    def _array(self, t: _GgmlTensor, dtype: Any) -> np.ndarray:
        """The tensor's values as a (ne3, ne2, ne1, ne0) array: a view of host memory, or a copy
        from a GPU buffer."""
        item = np.dtype(dtype).itemsize
        if t.nb[0] != item:
            raise EngineError("An activation tensor is not laid out row by row; llama.cpp changed.")
        shape = tuple(int(t.ne[i]) for i in (3, 2, 1, 0))
        strides = tuple(int(t.nb[i]) for i in (3, 2, 1, 0))
        nbytes = item + sum((n - 1) * s for n, s in zip(shape, strides, strict=True))
        if self.lib.ggml_backend_buffer_is_host(t.buffer) and t.data:
            raw: Any = (ctypes.c_char * nbytes).from_address(t.data)
        else:
            raw = np.empty(nbytes, dtype=np.uint8)
            self.lib.ggml_backend_tensor_get(ctypes.addressof(t), raw.ctypes.data, 0, nbytes)
        return np.ndarray(shape, dtype=dtype, buffer=raw, strides=strides)

    def _entry(self, name: str, n_mat: int, ne0: int) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, ne0), dtype=np.float64)
            self.counts[name] = np.zeros(n_mat, dtype=np.int64)
        sums, counts = self.sums[name], self.counts[name]
        if sums.shape != (n_mat, ne0):
            raise EngineError(f"{name} was multiplied with inputs of two different widths.")
        return sums, counts

    def _collect(self, t: _GgmlTensor) -> None:
        src0, src1 = t.src[0].contents, t.src[1].contents
        name = weight_name(src0.name.decode("utf-8", "replace"))
        n2, n3 = int(src0.ne[2]), int(src0.ne[3])
        sums, counts = self._entry(name, n2 * n3, int(src1.ne[0]))
        x = self._array(src1, np.float32)
        for i3 in range(x.shape[0]):
            for i2 in range(x.shape[1]):
                rows = x[i3, i2]  # (ne1, ne0): the squares summed per column, in float32 as llama.cpp
                sums[(i3 % n3) * n2 + (i2 % n2)] += np.einsum("rj,rj->j", rows, rows)
        counts += x.shape[0] * x.shape[1] * x.shape[2] // (n2 * n3)

    def _collect_experts(self, t: _GgmlTensor) -> None:
        src0, src1, ids_t = t.src[0].contents, t.src[1].contents, t.src[2].contents
        name = weight_name(src0.name.decode("utf-8", "replace"))
        n_as = int(src0.ne[2])
        sums, counts = self._entry(name, n_as, int(src1.ne[0]))
        x = self._array(src1, np.float32)[
            0
        ]  # (n_tokens, ne11, ne0): ne11 is 1 when every expert gets the same row
        ids = self._array(ids_t, np.int32)[0, 0]  # (n_tokens, n_ids)
        n_tokens, n_ids = ids.shape
        if ids.size and (ids.min() < 0 or ids.max() >= n_as):
            raise EngineError(f"The router of {name} chose an expert that does not exist.")
        sq = np.square(x)
        tokens = np.arange(n_tokens)
        # Routing as a (token × expert) matrix: one matrix product adds each token's squares to the
        # experts it went to (a few hundred MFLOP per layer; a Python loop over tokens is far slower).
        if x.shape[1] == 1:
            route = np.zeros((n_tokens, n_as), dtype=np.float32)
            np.add.at(route, (np.repeat(tokens, n_ids), ids.reshape(-1)), 1.0)
            sums += route.T @ sq[:, 0]
        else:
            for k in range(n_ids):
                route = np.zeros((n_tokens, n_as), dtype=np.float32)
                route[tokens, ids[:, k]] = 1.0
                sums += route.T @ sq[:, k % x.shape[1]]
        counts += np.bincount(ids.reshape(-1), minlength=n_as)

    def result(self, datasets: tuple[str, ...], n_chunks: int, n_ctx: int) -> Imatrix:
        entries = {
            name: ImatrixEntry(self.sums[name].astype(np.float32), self.counts[name].copy())
            for name in self.sums
        }
        if any(not np.isfinite(e.sums).all() for e in entries.values()):
            raise EngineError(
                "The model produced non-finite activations.", hint="The file is probably damaged."
            )
        return Imatrix(entries, datasets, n_chunks, n_ctx)


# llama.cpp's log, kept for load errors; module-level so the C callback outlives ``run``.
_log_lines: list[str] = []


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
    if len(_log_lines) < 5000:
        _log_lines.append(text.decode("utf-8", "replace"))


def run(spec: P.ComputeImatrix, send: Callable[[P.Message], None]) -> P.ImatrixDone:
    import llama_cpp as L

    _log_lines.clear()
    L.llama_log_set(_on_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    collector = Collector(L.llama_cpp._lib)
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = spec.n_gpu_layers
    model = L.llama_model_load_from_file(spec.model.encode(), mp)
    if not model:
        errors = [ln.strip() for ln in "".join(_log_lines).splitlines() if "error" in ln.lower()]
        raise ModelReadError(f"llama.cpp could not load {Path(spec.model).name}" + (f": {errors[-1]}" if errors else "."),
                             hint="Check the file, or update TailorLM for a newer llama.cpp.")  # fmt: skip
    ctx = None
    try:
        vocab = L.llama_model_get_vocab(model)
        tokens = _tokenize(L, vocab, spec.text)
        n_ctx = spec.n_ctx
        n_train = int(L.llama_model_n_ctx_train(model))
        if n_ctx > n_train:
            raise TailorError(f"Chunks of {n_ctx:,} tokens are longer than the {n_train:,} the model was trained on.",
                              hint="Use 512, as llama-imatrix does.")  # fmt: skip
        available = len(tokens) // n_ctx
        if available < 1:
            raise TextTooShortError(f"The text has {len(tokens):,} tokens, less than one chunk of {n_ctx}.",
                                    hint="Give a longer text: a few pages at least, 100+ chunks for a good matrix.")  # fmt: skip
        n_chunks = min(available, spec.n_chunks) if spec.n_chunks > 0 else available
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx  # one chunk per decode: one graph, logits for all rows
        cp.n_threads = cp.n_threads_batch = spec.n_threads or physical_cores()
        cp.cb_eval = ctypes.cast(collector.callback, L.ggml_backend_sched_eval_callback)
        cp.cb_eval_user_data = None
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not create a {n_ctx}-token context.", hint="Try a smaller --ctx."
            )
        eval_s = _evaluate(L, ctx, vocab, tokens, n_ctx, n_chunks, collector, send)
        imatrix = collector.result((spec.dataset,), n_chunks, n_ctx)
        write_imatrix(spec.output, imatrix)
        return P.ImatrixDone(output=spec.output, n_chunks=n_chunks, n_tokens=n_chunks * n_ctx,
                             n_entries=len(imatrix.entries), eval_s=eval_s)  # fmt: skip
    finally:
        if ctx:
            L.llama_free(ctx)
        L.llama_model_free(model)


def _tokenize(L: Any, vocab: Any, text: str) -> np.ndarray:
    raw = text.encode()
    cap = len(raw) + 16
    buf = (L.llama_token * cap)()
    n = L.llama_tokenize(vocab, raw, len(raw), buf, cap, True, False)  # as llama-imatrix: with BOS
    if n < 0:
        raise EngineError("llama.cpp could not tokenize the text.")
    return np.array(buf[:n], dtype=np.int32)


def _evaluate(L: Any, ctx: Any, vocab: Any, tokens: np.ndarray, n_ctx: int, n_chunks: int,
              collector: Collector, send: Callable[[P.Message], None]) -> float:  # fmt: skip
    add_bos, bos = bool(L.llama_vocab_get_add_bos(vocab)), int(L.llama_vocab_bos(vocab))
    batch = L.llama_batch_init(n_ctx, 0, 1)
    try:
        batch.n_tokens = n_ctx
        for i in range(n_ctx):
            batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = i, 1, 0, True
        batch_tokens = np.ctypeslib.as_array(batch.token, shape=(n_ctx,))
        t0 = time.perf_counter()
        for c in range(n_chunks):
            batch_tokens[:] = tokens[c * n_ctx : (c + 1) * n_ctx]
            if add_bos:
                batch_tokens[0] = bos
            L.llama_memory_clear(L.llama_get_memory(ctx), True)
            rc = L.llama_decode(ctx, batch)
            if collector.error is not None:
                raise collector.error
            if rc != 0:
                raise EngineError(f"llama_decode failed with code {rc} on chunk {c + 1}.")
            elapsed = time.perf_counter() - t0
            send(P.ImatrixProgress(chunks_done=c + 1, n_chunks=n_chunks, tok_s=(c + 1) * n_ctx / elapsed))
        return time.perf_counter() - t0
    finally:
        L.llama_batch_free(batch)


def _handle(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    if not isinstance(request, P.ComputeImatrix):
        raise EngineError(f"The importance matrix got a {request.kind} request.")
    return run(request, send)


if __name__ == "__main__":
    serve_one_job(_handle)

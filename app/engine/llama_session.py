"""One loaded model and its context, driven through llama.cpp's C API (llama-cpp-python's ctypes).

The high-level ``llama_cpp.Llama`` loop costs ~0.2 ms of Python per token (copies of the logits,
a Python sampler); here the prompt goes in as ``llama_decode`` batches and the answer comes out of
:mod:`app.engine.token_stream`. Prompts reuse the KV cache prefix they share with the previous
turn, so a follow-up question only evaluates the new tokens. A cancel reaches llama.cpp through its
abort callback, which ggml polls between graph nodes: a 512-token prompt batch stops inside the
batch, within milliseconds. The callback is C (app/engine/native/abort.c, reading the flag of an
:class:`~app.engine.native.AbortFlag`) where the helper library is there: ggml's CPU threads wait at
a barrier while it runs, after every node, and a Python one takes the GIL each time (on two cores
within the noise: tests/bench/abort_callback.py). Runs only inside the engine's child.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# llama.cpp before numpy (which app.engine.sampler imports): with numpy imported first, the CUDA
# build of llama.cpp crashed (SIGSEGV) inside llama_model_load_from_file on an H200 machine, every
# time (tests/gpu/speed_proof.py, 2026-12-03); with llama.cpp first, the same load works.
import llama_cpp

from app.core.errors import ContextOverflowError, WorkerError
from app.engine import native
from app.engine.errors import LoadFailed
from app.engine.expert_offload import keep_experts_in_ram
from app.engine.host import device_free_bytes, physical_cores, ram_available_bytes
from app.engine.llama_log import (
    alloc_failure,
    damaged_file_message,
    load_error,
    out_of_memory_message,
    parse_buffers,
)
from app.engine.page_advice import settle_pages
from app.engine.protocol import Load, Sampling
from app.engine.rpc_devices import attach_workers, has_local_gpu
from app.engine.sampler import make_sampler
from app.engine.token_stream import Decoder, GenStats, Piece, stream_answer

GGML_LOG_LEVEL_ERROR = 4  # enum ggml_log_level, ggml.h
# ggml_type ids of the KV cache types (ggml.h)
KV_TYPES = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q5_0": 6,
    "Q5_1": 7,
    "Q8_0": 8,
    "BF16": 30,
    "IQ4_NL": 20,
}


# llama.cpp keeps one log callback for the whole process, so it is this module's, not a session's:
# a session's own callback, freed with the session, left llama.cpp calling freed memory at the
# next load in the same process (a segfault in a later llama_cpp.Llama(), seen in the test suite).
_log_sink: list[list[str]] = []  # the log lines of the newest session


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _on_log(level: int, text: bytes | None, user: ctypes.c_void_p) -> None:
    if not text:
        return
    if _log_sink and len(_log_sink[0]) < 5000:
        _log_sink[0].append(text.decode("utf-8", "replace"))
    if level == GGML_LOG_LEVEL_ERROR:
        # Also to stderr: if ggml aborts next ("CUDA error: out of memory"), the parent reads the
        # cause from there, since this process is gone.
        os.write(2, text)


class LlamaSession:
    def __init__(self, cancel: threading.Event | None = None) -> None:
        L = llama_cpp
        self.L = L
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.kv_tokens: list[int] = []  # what the KV cache holds, position by position
        self.output_on_gpu = False  # the output layer is offloaded: greedy runs in the graph there
        self.log_lines: list[str] = []
        # Set: stop the running request. The worker owns it (it knows which request runs).
        self.cancel = cancel if cancel is not None else native.AbortFlag()

        @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)
        def on_abort(user: ctypes.c_void_p) -> bool:
            # Polled by ggml between graph nodes (ggml-cpu.c, ggml_graph_compute_thread): a cancel
            # lands inside a decode, within milliseconds, even in a 512-token prompt batch.
            return self.cancel.is_set()

        self._on_abort = on_abort  # keep the C callback alive while the context may call it
        _log_sink[:] = [self.log_lines]  # llama.cpp's log now goes to this session
        L.llama_log_set(_on_log, ctypes.c_void_p(0))
        L.llama_backend_init()

    # --- loading -------------------------------------------------------------------------

    def load(self, req: Load, on_progress: Callable[[float], None]) -> dict[str, Any]:
        L = self.L
        self.unload()
        self.log_lines.clear()
        t0 = time.perf_counter()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = req.n_gpu_layers
        keep = keep_experts_in_ram(mp, req.moe_cpu_layers, req.output_here)  # noqa: F841 (alive through the load)
        try:
            on_workers = attach_workers(mp, req.rpc_devices, req.tensor_split,  # noqa: F841 (alive too)
                                        int(L.llama_max_devices()))  # fmt: skip
        except WorkerError as e:
            raise LoadFailed(str(e), hint=e.hint) from None
        if not req.use_mmap:
            mp.load_mode = L.LLAMA_LOAD_MODE_NONE

        @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_float, ctypes.c_void_p)
        def progress(fraction: float, user: ctypes.c_void_p) -> bool:
            on_progress(float(fraction))
            return True  # a load has no request id to cancel: a stuck one ends with its process

        mp.progress_callback = progress
        self.model = L.llama_model_load_from_file(req.model_path.encode(), mp)
        if not self.model:
            raise self._load_failed(hint=None)
        self.vocab = L.llama_model_get_vocab(self.model)

        cp = L.llama_context_default_params()
        cp.n_ctx = req.n_ctx
        cp.n_batch = req.n_batch
        cp.n_ubatch = req.n_ubatch
        threads = req.n_threads or physical_cores()
        cp.n_threads = cp.n_threads_batch = threads
        cp.n_outputs_max = 1  # only the last token's logits are ever read
        cp.swa_full = req.swa_full
        cp.flash_attn_type = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}[req.flash_attn]  # fmt: skip
        cp.type_k = KV_TYPES[req.type_k.upper()]
        cp.type_v = KV_TYPES[req.type_v.upper()]
        helpers = native.library()
        if helpers is not None and isinstance(
            self.cancel, native.AbortFlag
        ):  # C reads the flag: no GIL per node
            cp.abort_callback = L.ggml_abort_callback(helpers.abort_address)
            cp.abort_callback_data = ctypes.addressof(self.cancel.flag)
        else:
            cp.abort_callback = self._on_abort
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            failed = self._load_failed(
                hint="Try a smaller context, a quantized KV cache or fewer GPU layers."
            )
            L.llama_model_free(self.model)
            self.model = None
            raise failed
        self.kv_tokens = []
        n_layer = int(L.llama_model_n_layer(self.model))
        # on a GPU of this machine (workers come first in the device list, so the output layer is
        # never theirs while this machine has a GPU; llama_supports_gpu_offload() counts RPC too)
        self.output_on_gpu = has_local_gpu() and not 0 <= req.n_gpu_layers <= n_layer
        pages = settle_pages(req.model_path, req.read_once) if req.use_mmap else None  # page_advice.py
        template = L.llama_model_chat_template(self.model, None)
        bufs = parse_buffers("".join(self.log_lines))
        return {
            "load_s": time.perf_counter() - t0,
            "n_ctx": L.llama_n_ctx(self.ctx),
            "n_threads": threads,
            "flash_attn": bufs.flash_attn,
            "bos_token": self._text(L.llama_vocab_bos(self.vocab)),
            "eos_token": self._text(L.llama_vocab_eos(self.vocab)),
            "chat_template": template.decode("utf-8", "replace") if template else None,
            "buffers": bufs.flat(),
            "released_bytes": pages.released_bytes if pages else 0,
        }

    def _load_failed(self, *, hint: str | None) -> LoadFailed:
        """Why the load failed, in words: a buffer that did not fit says what, how much and how
        much was free; a model file llama.cpp would not read (``hint`` None) says it looks damaged,
        with llama.cpp's own reason; anything else is llama.cpp's last error line."""
        log = "".join(self.log_lines)
        failure = alloc_failure(log)
        if failure is not None:
            free = ram_available_bytes() if failure.in_ram else device_free_bytes(failure.buffer)
            message, hint = out_of_memory_message(failure, free)
            return LoadFailed(message, hint=hint)
        if hint is None:
            message, next_step = damaged_file_message(log)
            return LoadFailed(message, hint=next_step)
        return LoadFailed(load_error(log) or "llama.cpp could not load the model", hint=hint)

    def _text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self.L.llama_vocab_get_text(self.vocab, token)).decode("utf-8", "replace")

    def unload(self) -> None:
        if self.ctx:
            self.L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            self.L.llama_model_free(self.model)
            self.model = None
        self.kv_tokens = []

    # --- tokens --------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        L = self.L
        raw = text.encode()
        cap = len(raw) + 16
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, True)
        if n < 0:  # buffer too small: llama.cpp says how many it needs
            cap = -n
            buf = (L.llama_token * cap)()
            n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, add_special, True)
        return list(buf[:n])

    def _decode(self, tokens: list[int]) -> int:
        arr = (self.L.llama_token * len(tokens))(*tokens)
        return int(self.L.llama_decode(self.ctx, self.L.llama_batch_get_one(arr, len(tokens))))

    # --- generation ----------------------------------------------------------------------

    def generate(self, prompt: str, s: Sampling, stats: GenStats, *, flush_s: float) -> Iterator[Piece]:
        """Yield text pieces (batched every ``flush_s``); fills ``stats`` as it goes. A set
        ``cancel`` ends it with ``stats.stop_reason == "cancelled"``, in the prompt or the answer."""
        L = self.L
        t_req = time.perf_counter()
        tokens = self.tokenize(prompt)
        bos = L.llama_vocab_bos(self.vocab)
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template wrote <bos> and the vocab adds one too
        n_ctx = L.llama_n_ctx(self.ctx)
        stats.n_prompt_tokens = len(tokens)
        if len(tokens) >= n_ctx:
            raise ContextOverflowError(f"The prompt has {len(tokens):,} tokens but the context holds {n_ctx:,}.",
                                       hint="Shorten the conversation, or load the model with a longer context.")  # fmt: skip
        if not self._evaluate_prompt(tokens, stats):
            stats.stop_reason = "cancelled"
            return
        stats.prompt_s = time.perf_counter() - t_req
        sampler = make_sampler(L, self.vocab, s, ctx=self.ctx if self.output_on_gpu else None)
        decoder = Decoder(L, self.ctx, self.vocab, self.kv_tokens, self.cancel)
        try:
            yield from stream_answer(decoder, sampler, s, stats, t_req=t_req, n_ctx=n_ctx, flush_s=flush_s)
        finally:
            sampler.close()

    def _evaluate_prompt(self, tokens: list[int], stats: GenStats) -> bool:
        """Put ``tokens`` in the KV cache, reusing the prefix already there; False if cancelled.
        ``stats.n_prompt_evaluated`` counts the tokens evaluated, also when it stops half-way."""
        L = self.L
        memory = L.llama_get_memory(self.ctx)
        common = 0
        for a, b in zip(self.kv_tokens, tokens, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # re-evaluate at least one token to get logits
        L.llama_memory_seq_rm(memory, 0, common, -1)
        self.kv_tokens = self.kv_tokens[:common]
        todo = tokens[common:]
        n_batch = int(L.llama_n_batch(self.ctx))  # the most one llama_decode takes (Load.n_batch)
        for i in range(0, len(todo), n_batch):
            if self.cancel.is_set():  # between batches (the abort callback covers inside one)
                return False
            chunk = todo[i : i + n_batch]
            rc = self._decode(chunk)
            if rc != 0:
                # llama.cpp removed the failed batch's cells (llama_context::decode); drop anything
                # past what we know is there, and keep the completed batches for the next prompt.
                L.llama_memory_seq_rm(memory, 0, len(self.kv_tokens), -1)
                if rc == 2 or self.cancel.is_set():  # 2: aborted by the callback
                    return False
                raise RuntimeError(f"llama_decode failed with code {rc} during the prompt")
            self.kv_tokens.extend(chunk)
            stats.n_prompt_evaluated += len(chunk)
        return True

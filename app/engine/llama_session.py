"""One loaded model and its context, driven through llama.cpp's C API (llama-cpp-python's ctypes).

The high-level ``llama_cpp.Llama`` loop costs ~0.2 ms of Python per token (copies of the logits,
a Python sampler); here each token is one ``llama_decode`` of a single-token batch, sampling runs
in llama.cpp's C sampler chain, and text is detokenized incrementally — the Python work per
token is a few ctypes calls. Plain greedy decoding skips the chain: the C chain copies the whole
vocabulary into a candidate array every token (~1 ms for Gemma's 262k tokens, 4 % of a token on
two cores), while an argmax over a zero-copy view of the logits takes ~25 µs. Prompts reuse the KV cache prefix they share with the previous turn,
so a follow-up question only evaluates the new tokens. Runs only inside the engine's child.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.engine.llama_log import alloc_failure, out_of_memory_message, parse_buffers
from app.engine.protocol import Load, Sampling

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


class LoadFailed(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class Piece:
    text: str
    n_tokens: int


@dataclass
class GenStats:
    stop_reason: str = "max_tokens"
    n_prompt_tokens: int = 0
    n_prompt_evaluated: int = 0
    n_gen_tokens: int = 0
    ttft_s: float = 0.0
    prompt_s: float = 0.0
    gen_s: float = 0.0


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


class LlamaSession:
    def __init__(self) -> None:
        import llama_cpp as L

        self.L = L
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.kv_tokens: list[int] = []  # what the KV cache holds, position by position
        self.log_lines: list[str] = []
        self.cancel = threading.Event()

        @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
        def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
            if len(self.log_lines) < 5000:
                self.log_lines.append(text.decode("utf-8", "replace"))
            if level == GGML_LOG_LEVEL_ERROR:
                # Also to stderr: if ggml aborts next ("CUDA error: out of memory"), the parent
                # reads the cause from there, since this process is gone.
                os.write(2, text)

        @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)
        def on_abort(user: ctypes.c_void_p) -> bool:
            # Polled by ggml between graph nodes: a cancel lands mid-decode, within milliseconds.
            return self.cancel.is_set()

        self._on_log, self._on_abort = on_log, on_abort  # keep the C callbacks alive
        L.llama_log_set(on_log, ctypes.c_void_p(0))
        L.llama_backend_init()

    # --- loading -------------------------------------------------------------------------

    def load(self, req: Load, on_progress: Callable[[float], None]) -> dict[str, Any]:
        L = self.L
        self.unload()
        self.log_lines.clear()
        t0 = time.perf_counter()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = req.n_gpu_layers
        if not req.use_mmap:
            mp.load_mode = L.LLAMA_LOAD_MODE_NONE

        @ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_float, ctypes.c_void_p)
        def progress(fraction: float, user: ctypes.c_void_p) -> bool:
            on_progress(float(fraction))
            return not self.cancel.is_set()

        mp.progress_callback = progress
        self.model = L.llama_model_load_from_file(req.model_path.encode(), mp)
        if not self.model:
            raise self._load_failed(hint="Check the file, or try fewer GPU layers.")
        self.vocab = L.llama_model_get_vocab(self.model)

        cp = L.llama_context_default_params()
        cp.n_ctx = req.n_ctx
        cp.n_batch = req.n_batch
        cp.n_ubatch = req.n_ubatch
        threads = req.n_threads or _physical_cores()
        cp.n_threads = cp.n_threads_batch = threads
        cp.n_outputs_max = 1  # only the last token's logits are ever read
        cp.swa_full = req.swa_full
        cp.flash_attn_type = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}[req.flash_attn]  # fmt: skip
        cp.type_k = KV_TYPES[req.type_k.upper()]
        cp.type_v = KV_TYPES[req.type_v.upper()]
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
        }

    def _load_failed(self, *, hint: str) -> LoadFailed:
        """Why the load failed, in words: a buffer that did not fit says what, how much and how
        much was free; anything else is llama.cpp's last error line."""
        log = "".join(self.log_lines)
        failure = alloc_failure(log)
        if failure is not None:
            free = _ram_available_bytes() if failure.in_ram else _device_free_bytes(failure.buffer)
            return LoadFailed(*out_of_memory_message(failure, free))
        lines = [ln.strip() for ln in log.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
        return LoadFailed(lines[-1] if lines else "llama.cpp could not load the model", hint=hint)

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
        """Yield text pieces (batched every ``flush_s``); fills ``stats`` as it goes."""
        L = self.L
        t_req = time.perf_counter()
        tokens = self.tokenize(prompt)
        bos = L.llama_vocab_bos(self.vocab)
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]  # the template wrote <bos> and the vocab adds one too
        n_ctx = L.llama_n_ctx(self.ctx)
        stats.n_prompt_tokens = len(tokens)
        if len(tokens) >= n_ctx:
            raise ValueError(f"the prompt has {len(tokens)} tokens but the context holds {n_ctx}")
        # Reuse the KV cache for the prefix this prompt shares with what is already evaluated.
        common = 0
        for a, b in zip(self.kv_tokens, tokens, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # re-evaluate at least one token to get logits
        L.llama_memory_seq_rm(L.llama_get_memory(self.ctx), 0, common, -1)
        self.kv_tokens = self.kv_tokens[:common]
        todo = tokens[common:]
        stats.n_prompt_evaluated = len(todo)
        n_batch = 512
        for i in range(0, len(todo), n_batch):
            chunk = todo[i : i + n_batch]
            rc = self._decode(chunk)
            if rc != 0:
                self.kv_tokens = []  # the cache is in an unknown state
                L.llama_memory_seq_rm(L.llama_get_memory(self.ctx), 0, 0, -1)
                if rc == 2 or self.cancel.is_set():
                    stats.stop_reason = "cancelled"
                    return
                raise RuntimeError(f"llama_decode failed with code {rc} during the prompt")
            self.kv_tokens.extend(chunk)
        t_prompt = time.perf_counter()
        stats.prompt_s = t_prompt - t_req

        smpl = self._sampler(s)
        try:
            yield from self._sample_loop(smpl, s, stats, t_req, t_prompt, n_ctx, flush_s)
        finally:
            if smpl is not None:
                L.llama_sampler_free(smpl)

    def _sample_loop(self, smpl: Any, s: Sampling, stats: GenStats, t_req: float, t_prompt: float,
                     n_ctx: int, flush_s: float) -> Iterator[Piece]:  # fmt: skip
        L = self.L
        piece_buf = ctypes.create_string_buffer(256)
        pending = bytearray()  # bytes of an unfinished UTF-8 character
        out_text: list[str] = []
        text_since_flush: list[str] = []
        n_since_flush = 0
        last_flush = time.perf_counter()
        hold = max((len(x) for x in s.stop), default=0)  # characters held back to catch stop strings
        emitted = 0  # characters of out_text already sent
        tok_arr = (L.llama_token * 1)()
        batch = L.llama_batch_get_one(tok_arr, 1)
        decode, to_piece, is_eog = L.llama_decode, L.llama_token_to_piece, L.llama_vocab_is_eog
        ctx, vocab = self.ctx, self.vocab
        sample = self._greedy_argmax() if smpl is None else L.llama_sampler_sample
        stop_reason = "max_tokens"
        n_gen = 0
        while n_gen < s.max_tokens:
            tok = sample(smpl, ctx, -1)
            if n_gen == 0:
                stats.ttft_s = time.perf_counter() - t_req
            if is_eog(vocab, tok) and not s.ignore_eos:
                stop_reason = "eos"
                break
            n_gen += 1
            n = to_piece(vocab, tok, piece_buf, 256, 0, False)
            pending += piece_buf.raw[:n]
            try:
                text = pending.decode("utf-8")
                pending.clear()
            except UnicodeDecodeError:
                text = ""  # wait for the rest of a multi-byte character
            if text:
                out_text.append(text)
                text_since_flush.append(text)
            n_since_flush += 1
            if s.stop and text:
                joined = "".join(out_text)
                hit = min(
                    (i for i in (joined.find(x, max(0, emitted - hold)) for x in s.stop) if i >= 0),
                    default=-1,
                )
                if hit >= 0:
                    if hit > emitted:
                        yield Piece(joined[emitted:hit], n_since_flush)
                    stop_reason = "stop_string"
                    n_since_flush = 0
                    text_since_flush.clear()
                    emitted = hit
                    break
            if len(self.kv_tokens) + 1 >= n_ctx:
                stop_reason = "context_full"
                break
            if self.cancel.is_set():
                stop_reason = "cancelled"
                break
            now = time.perf_counter()
            if now - last_flush >= flush_s or n_gen == 1:  # the first token goes out at once (TTFT)
                joined = "".join(out_text)
                upto = len(joined) - hold if s.stop else len(joined)
                if upto > emitted:
                    yield Piece(joined[emitted:upto], n_since_flush)
                    emitted = upto
                    n_since_flush = 0
                last_flush = now
            tok_arr[0] = tok
            rc = decode(ctx, batch)
            if rc != 0:
                if rc == 2 or self.cancel.is_set():
                    stop_reason = "cancelled"
                    break
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self.kv_tokens.append(tok)
        if stop_reason != "stop_string":
            joined = "".join(out_text)
            if len(joined) > emitted or n_since_flush:
                yield Piece(joined[emitted:], n_since_flush)
        stats.stop_reason = stop_reason
        stats.n_gen_tokens = n_gen
        stats.gen_s = time.perf_counter() - t_prompt

    def _greedy_argmax(self) -> Callable[[Any, Any, int], int]:
        """``llama_sampler_sample`` for plain greedy decoding, without the candidate array."""
        import numpy as np

        L, n_vocab = self.L, int(self.L.llama_vocab_n_tokens(self.vocab))
        as_array, argmax = np.ctypeslib.as_array, np.argmax

        def sample(_smpl: Any, ctx: Any, idx: int) -> int:
            return int(argmax(as_array(L.llama_get_logits_ith(ctx, idx), shape=(n_vocab,))))

        return sample

    def _sampler(self, s: Sampling) -> Any:
        """The C sampler chain for ``s``; None for plain greedy (see ``_greedy_argmax``)."""
        L = self.L
        if s.temperature <= 0 and s.repeat_penalty == 1.0:
            return None
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = L.llama_sampler_chain_add
        if s.repeat_penalty != 1.0:
            add(chain, L.llama_sampler_init_penalties(L.llama_vocab_n_tokens(self.vocab), s.repeat_last_n,
                                                      s.repeat_penalty, 0.0, 0.0))  # fmt: skip
        if s.temperature <= 0:
            add(chain, L.llama_sampler_init_greedy())
            return chain
        if s.top_k > 0:
            add(chain, L.llama_sampler_init_top_k(s.top_k))
        if s.top_p < 1.0:
            add(chain, L.llama_sampler_init_top_p(s.top_p, 1))
        if s.min_p > 0:
            add(chain, L.llama_sampler_init_min_p(s.min_p, 1))
        add(chain, L.llama_sampler_init_temp(s.temperature))
        seed = s.seed if s.seed >= 0 else 0xFFFFFFFF  # LLAMA_DEFAULT_SEED: random
        add(chain, L.llama_sampler_init_dist(seed))
        return chain


def _device_free_bytes(name: str) -> int | None:
    """Free memory of the ggml device ``name`` ("CUDA0") as its backend reports it (cudaMemGetInfo).
    Asked only after a failed load: this process already holds the device's context."""
    try:
        # libllama's handle resolves libggml's symbols too; llama_cpp._ggml would not do here, as
        # it ignores LLAMA_CPP_LIB_PATH (llama-cpp-python 0.3.36) and finds no library then.
        from llama_cpp import llama_cpp as lib_module

        lib = lib_module._lib
        by_name = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(("ggml_backend_dev_by_name", lib))
        sz = ctypes.POINTER(ctypes.c_size_t)
        memory = ctypes.CFUNCTYPE(None, ctypes.c_void_p, sz, sz)(("ggml_backend_dev_memory", lib))
    except (ImportError, AttributeError, OSError):
        return None
    dev = by_name(name.encode())
    if not dev:
        return None
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    memory(dev, ctypes.byref(free), ctypes.byref(total))
    return int(free.value) if total.value else None


def _ram_available_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def _physical_cores() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1

"""The quality check's child: ``python -m app.engine.quality_child``, one :class:`ScoreQuality`
request on stdin, :class:`QualityProgress` lines and one :class:`QualityResult` (or ``Failed``) on
its private stdout. The method is llama-perplexity's; see :mod:`app.engine.quality_eval`.

Both models are loaded in this one process and compared chunk by chunk: each chunk is one batched
``llama_decode`` per model, and the logits are read through zero-copy numpy views.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.errors import EngineError, ModelReadError, TailorError
from app.engine import protocol as P
from app.engine.child import serve_one_job
from app.engine.errors import TextTooShortError, VocabularyMismatchError
from app.engine.host import physical_cores

MIN_TOKENS = 16  # below this a chunk scores a handful of tokens: noise, not a measurement
# Logits per numpy step (4 MB temporaries). Measured on 2 cores, 255 rows: 0.12 s (49k vocab) and
# 0.37 s (262k) per chunk; whole-chunk steps (4M+ floats) were 1.5-3x slower.
STATS_BLOCK_FLOATS = 1 << 20


class _Model:
    """One loaded model and, once ``open_context`` ran, its context."""

    def __init__(self, L: Any, path: str, log: list[str]) -> None:
        self.L, self.path, self.ctx = L, path, None
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0  # the comparison is about the weights; the CPU runs any model that fits
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            errors = [ln.strip() for ln in "".join(log).splitlines() if "error" in ln.lower()]
            raise ModelReadError(
                f"llama.cpp could not load {Path(path).name}" + (f": {errors[-1]}" if errors else "."),
                hint="Check the file, or update TailorLM for a newer llama.cpp.",
            )
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.bos = int(L.llama_vocab_bos(self.vocab))

    def tokenize(self, text: str) -> list[int]:
        L, raw = self.L, text.encode()
        cap = len(raw) + 16  # a token covers at least one byte, plus BOS/EOS
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self.vocab, raw, len(raw), buf, cap, True, False)
        return list(buf[:n])

    def open_context(self, n_ctx: int, n_threads: int) -> None:
        L = self.L
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx  # a chunk is one decode, one graph
        cp.n_outputs_max = cp.n_outputs_max_per_seq = n_ctx  # logits for every scored position
        cp.n_threads = cp.n_threads_batch = n_threads
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise EngineError(
                f"llama.cpp could not create a {n_ctx}-token context for {Path(self.path).name}.",
                hint="Try a smaller context.",
            )

    def logits_after(self, batch: Any, n_out: int) -> Any:
        """Decode ``batch`` from an empty cache; a view (no copy) of its ``n_out`` logits rows."""
        import numpy as np

        L = self.L
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        rc = L.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama_decode failed with code {rc} on {Path(self.path).name}.")
        return np.ctypeslib.as_array(L.llama_get_logits(self.ctx), shape=(n_out, self.n_vocab))

    def close(self) -> None:
        if self.ctx:
            self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def _log_softmax(x: Any) -> tuple[Any, Any]:
    """(log-probabilities, probabilities) of each row of ``x``, in float32."""
    import numpy as np

    y = x - x.max(axis=1, keepdims=True)
    e = np.exp(y)
    s = e.sum(axis=1, keepdims=True)
    y -= np.log(s)
    e /= s
    return y, e


def chunk_stats(ref: Any, cand: Any, targets: Any) -> tuple[float, float, Any, int]:
    """(NLL sum of the reference, NLL sum of the candidate, per-token KLD, top-1 agreements)
    for logits rows ``ref``/``cand`` that predict ``targets``; worked in cache-sized row blocks."""
    import numpy as np

    n, n_vocab = ref.shape
    step = max(1, STATS_BLOCK_FLOATS // n_vocab)
    nll_ref = nll_cand = 0.0
    klds, agree = [], 0
    for r0 in range(0, n, step):
        a, p = _log_softmax(ref[r0 : r0 + step])
        b, _ = _log_softmax(cand[r0 : r0 + step])
        rows, t = np.arange(len(a)), targets[r0 : r0 + step]
        nll_ref -= float(a[rows, t].sum(dtype=np.float64))
        nll_cand -= float(b[rows, t].sum(dtype=np.float64))
        agree += int((a.argmax(axis=1) == b.argmax(axis=1)).sum())
        a -= b
        a *= p
        klds.append(a.sum(axis=1, dtype=np.float64))
    return nll_ref, nll_cand, np.concatenate(klds), agree


# llama.cpp's log, kept for load errors. Module-level so the C callback outlives every ``run``:
# llama.cpp keeps calling it after ``run`` returns when ``run`` is used in-process.
_log_lines: list[str] = []


@ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
def _on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
    if len(_log_lines) < 5000:
        _log_lines.append(text.decode("utf-8", "replace"))


def run(spec: P.ScoreQuality, on_progress: Callable[[float], None]) -> P.QualityResult:
    """The measurement itself; runs in the child (or in-process, for debugging)."""
    import llama_cpp as L
    import numpy as np

    t_start = time.perf_counter()
    log = _log_lines
    log.clear()
    L.llama_log_set(_on_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    models: list[_Model] = []
    try:
        models.append(_Model(L, spec.reference, log))
        models.append(_Model(L, spec.candidate, log))
        ref, cand = models
        tokens = np.array(ref.tokenize(spec.text), dtype=np.int32)
        if ref.n_vocab != cand.n_vocab or cand.tokenize(spec.text) != tokens.tolist():
            what = (f"{ref.n_vocab} vs {cand.n_vocab} tokens" if ref.n_vocab != cand.n_vocab
                    else "they split the text differently")  # fmt: skip
            raise VocabularyMismatchError(
                f"The two models have different vocabularies ({what}).",
                hint="Compare quantizations of the same model.",
            )
        n_ctx, n_train = spec.n_ctx, int(L.llama_model_n_ctx_train(ref.model))
        if n_ctx > n_train:  # positions past training give meaningless numbers
            raise TailorError(
                f"A {n_ctx:,}-token context is longer than the {n_train:,} tokens the model was trained on.",
                hint="Use 512 tokens, as llama-perplexity does.",
            )
        if len(tokens) < MIN_TOKENS:
            raise TextTooShortError(
                f"The text has {len(tokens)} tokens; at least {MIN_TOKENS} are needed.",
                hint="Give a longer text, a few pages for a stable result.",
            )
        n_chunks = len(tokens) // n_ctx
        if n_chunks == 0:  # shorter than one chunk: score it as one chunk of its own length
            n_ctx, n_chunks = len(tokens), 1
        threads = spec.n_threads or physical_cores()
        for m in models:
            m.open_context(n_ctx, threads)
        scores = _score(L, ref, cand, tokens, n_ctx, n_chunks, on_progress)
        return P.QualityResult(reference=spec.reference, candidate=spec.candidate, n_vocab=ref.n_vocab,
                               n_text_tokens=len(tokens), elapsed_s=time.perf_counter() - t_start, **scores)  # fmt: skip
    finally:
        for m in models:
            m.close()


def _score(
    L: Any, ref: _Model, cand: _Model, tokens: Any, n_ctx: int, n_chunks: int,
    on_progress: Callable[[float], None],
) -> dict[str, Any]:  # fmt: skip
    import numpy as np

    first = n_ctx // 2  # perplexity.cpp: score only the second half of each chunk
    n_out = n_ctx - 1 - first  # the last position predicts past the chunk
    batch = L.llama_batch_init(n_ctx, 0, 1)
    try:
        batch.n_tokens = n_ctx
        for i in range(n_ctx):
            batch.pos[i], batch.n_seq_id[i], batch.seq_id[i][0] = i, 1, 0
            batch.logits[i] = first <= i < n_ctx - 1
        batch_tokens = np.ctypeslib.as_array(batch.token, shape=(n_ctx,))
        nll_ref = nll_cand = 0.0
        agree, klds = 0, []
        ref_s = cand_s = 0.0
        t0 = time.perf_counter()
        for c in range(n_chunks):
            start = c * n_ctx
            batch_tokens[:] = tokens[start : start + n_ctx]
            if ref.add_bos:
                batch_tokens[0] = ref.bos
            t1 = time.perf_counter()
            ref_logits = ref.logits_after(batch, n_out)
            t2 = time.perf_counter()
            cand_logits = cand.logits_after(batch, n_out)
            t3 = time.perf_counter()
            ref_s, cand_s = ref_s + t2 - t1, cand_s + t3 - t2
            targets = tokens[start + first + 1 : start + n_ctx]
            a, b, k, n_agree = chunk_stats(ref_logits, cand_logits, targets)
            nll_ref, nll_cand, agree = nll_ref + a, nll_cand + b, agree + n_agree
            klds.append(k)
            on_progress((c + 1) / n_chunks)
        eval_s = time.perf_counter() - t0
    finally:
        L.llama_batch_free(batch)
    kld = np.concatenate(klds)
    n = len(kld)
    if not (np.isfinite(kld).all() and np.isfinite(nll_ref + nll_cand)):
        raise EngineError(
            "A model produced non-finite logits (NaN or infinity).",
            hint="The file is probably damaged: download it again.",
        )
    n_evaluated = n_chunks * n_ctx
    return {
        "n_ctx": n_ctx, "n_chunks": n_chunks, "n_tokens": n,
        "ppl_ref": float(np.exp(nll_ref / n)), "ppl_cand": float(np.exp(nll_cand / n)),
        "kld_mean": float(kld.mean()), "kld_p99": float(np.percentile(kld, 99)),
        "top1_agreement": agree / n,
        "ref_tok_s": n_evaluated / ref_s, "cand_tok_s": n_evaluated / cand_s,
        "tok_s": n_evaluated / eval_s, "eval_s": eval_s,
    }  # fmt: skip


def _handle(request: P.Message, send: Callable[[P.Message], None]) -> P.Message:
    if not isinstance(request, P.ScoreQuality):
        raise EngineError(f"The quality check got a {request.kind} request.")
    return run(request, lambda fraction: send(P.QualityProgress(fraction=fraction)))


if __name__ == "__main__":
    serve_one_job(_handle)

"""Load a GGUF with llama.cpp in *this* process and report what it allocated.

Run as a child: ``python -m app.engine.memory_probe '{"model": "...", "n_ctx": 4096, ...}'``.
It prints one JSON object: the buffer sizes llama.cpp logged (weights per buffer type, KV cache,
compute, output), and — unless ``dry_run`` — the peak resident set after a prompt of
``prompt_tokens`` tokens and ``decode_tokens`` decode steps. With ``dry_run`` the model is loaded
with ``no_alloc`` and ``LLAMA_LOAD_MODE_NONE``: llama.cpp sizes every buffer without reading the
weights (the mechanism behind llama.cpp's own ``--fit``), in a fraction of a second.

The same settings names as :class:`app.core.advice.estimate.RunSettings` are used, so a prediction and a
measurement describe the same run. A failure prints ``{"error": …, "log": …}`` and exits with 1.
The app runs it through :func:`probe_in_child`; benchmarks and tests run the command directly.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time
from typing import Any

from app.core.errors import EngineError
from app.engine.child import ChildProcess
from app.engine.errors import ProcessDied
from app.engine.expert_offload import keep_experts_in_ram
from app.engine.host import rss_bytes
from app.engine.llama_log import overridden_tensors, parse_buffers
from app.engine.llama_session import KV_TYPES


class _ProbeFailed(Exception):
    """llama.cpp refused the model or the context: reported as one JSON line, exit code 1."""


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    rss_before = rss_bytes()[1]

    dry = bool(spec.get("dry_run", False))
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = int(spec.get("n_gpu_layers", 0))
    keep = keep_experts_in_ram(mp, int(spec.get("moe_cpu_layers", 0)))  # noqa: F841 (alive through the load)
    if dry:
        mp.no_alloc = True
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    elif not spec.get("use_mmap", True):
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(spec["model"].encode(), mp)
    if not model:
        raise _ProbeFailed({"error": "load failed", "log": "".join(lines[-20:])})

    cp = L.llama_context_default_params()
    cp.n_ctx = int(spec.get("n_ctx", 4096))
    cp.n_batch = int(spec.get("n_batch", 512))
    cp.n_ubatch = int(spec.get("n_ubatch", 512))
    cp.n_threads = cp.n_threads_batch = int(spec.get("n_threads", 2))
    cp.n_outputs_max = int(spec.get("n_outputs_max", 1))
    cp.swa_full = bool(spec.get("swa_full", False))
    fa = spec.get("flash_attn", "auto")
    cp.flash_attn_type = {
        "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO,
        "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
    }[fa]
    cp.type_k = KV_TYPES[str(spec.get("type_k", "f16")).upper()]
    cp.type_v = KV_TYPES[str(spec.get("type_v", "f16")).upper()]
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise _ProbeFailed({"error": "context failed", "log": "".join(lines[-20:])})
    load_s = time.perf_counter() - t0

    result: dict[str, Any] = {"spec": spec, "load_s": load_s}
    if not dry:
        vocab = L.llama_model_get_vocab(model)
        n_vocab = L.llama_vocab_n_tokens(vocab)
        n_prompt = int(spec.get("prompt_tokens", cp.n_ubatch))
        # Deterministic, varied token ids: every row of a tied embedding is not what we want to
        # measure, only that a full ubatch runs through the graph.
        toks = [(i * 7919 + 13) % n_vocab for i in range(n_prompt)]
        pos = 0
        t1 = time.perf_counter()
        while pos < n_prompt:
            chunk = toks[pos : pos + cp.n_batch]
            arr = (L.llama_token * len(chunk))(*chunk)
            if L.llama_decode(ctx, L.llama_batch_get_one(arr, len(chunk))) != 0:
                raise _ProbeFailed({"error": "decode failed"})
            pos += len(chunk)
        t2 = time.perf_counter()
        n_decode = int(spec.get("decode_tokens", 8))
        tok = (L.llama_token * 1)(toks[-1])
        for _ in range(n_decode):
            if L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) != 0:
                raise _ProbeFailed({"error": "decode failed"})
        t3 = time.perf_counter()
        result.update(
            peak_rss_bytes=rss_bytes()[1],
            rss_before_load_bytes=rss_before,
            prompt_tok_s=n_prompt / (t2 - t1),
            decode_tok_s=n_decode / (t3 - t2) if n_decode else None,
        )

    b = parse_buffers("".join(lines))
    result.update(
        overridden_tensors=overridden_tensors("".join(lines)),
        model_buffers=b.model,
        kv_buffers=b.kv,
        kv_size_bytes=b.kv_size_bytes,
        compute_buffers=b.compute,
        output_buffers=b.output,
        flash_attn_used=b.flash_attn,
    )
    L.llama_free(ctx)
    L.llama_model_free(model)
    return result


def main(argv: list[str]) -> int:
    try:
        out, code = run(json.loads(argv[0])), 0
    except _ProbeFailed as exc:
        out, code = exc.args[0], 1
    sys.stdout.write(json.dumps(out) + "\n")
    return code


def probe_in_child(spec: dict[str, Any], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run :func:`run` in a fresh child process, so a crash or an out-of-memory kill of llama.cpp
    only costs this call. Raises ``EngineError`` with what the child said, or how it died."""
    child: ChildProcess[Any] = ChildProcess(
        "app.engine.memory_probe", json.dumps(spec), decode=json.loads, what="The llama.cpp process",
        hint="The file may be damaged or need a newer llama.cpp.",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        data = None
        while data is None and time.monotonic() < deadline:
            data = child.poll(max(0.0, deadline - time.monotonic()))
    except ProcessDied as exc:  # a crash before it printed anything
        raise EngineError(f"The llama.cpp process failed: {exc.death.cause}.", hint=exc.hint) from None
    finally:
        child.kill()  # done or out of time: it must not outlive the call
        child.close()
    if data is None:
        raise EngineError(f"llama.cpp did not finish within {timeout_s:.0f} s.")
    if not isinstance(data, dict) or "error" in data:
        cause = data.get("error") if isinstance(data, dict) else "an answer that is not a JSON object"
        raise EngineError(f"The llama.cpp process failed: {cause}.", hint=child.hint)
    return data


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Load a GGUF with llama.cpp in *this* process and report what it allocated.

Run as a child: ``python -m app.engine.memory_probe '{"model": "...", "n_ctx": 4096, ...}'``.
It prints one JSON object: the buffer sizes llama.cpp logged (weights per buffer type, KV cache,
compute, output), and — unless ``dry_run`` — the peak resident set after a prompt of
``prompt_tokens`` tokens and ``decode_tokens`` decode steps. With ``dry_run`` the model is loaded
with ``no_alloc`` and ``LLAMA_LOAD_MODE_NONE``: llama.cpp sizes every buffer without reading the
weights (the mechanism behind llama.cpp's own ``--fit``), in a fraction of a second.

The same settings names as :class:`app.core.estimate.RunSettings` are used, so a prediction and a
measurement describe the same run.
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
import time
from typing import Any

_MIB = 1 << 20
# "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB"
_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache:        CPU KV buffer size =    90.00 MiB"
_KV_BUF = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([\d.]+) MiB")
# "llama_kv_cache: size =   12.00 MiB (  4096 cells, ..." — logged in dry runs too
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB")
# "sched_reserve:        CPU compute buffer size =    99.38 MiB"
_COMPUTE_BUF = re.compile(r"(\S+) compute buffer size =\s+([\d.]+) MiB")
# "llama_context:        CPU  output buffer size =     0.19 MiB"
_OUTPUT_BUF = re.compile(r"(\S+)\s+output buffer size =\s+([\d.]+) MiB")

_KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _add(table: dict[str, int], key: str, mib: str) -> None:
    table[key] = table.get(key, 0) + round(float(mib) * _MIB)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp as L

    lines: list[str] = []

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def on_log(level: int, text: bytes, user: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", "replace"))

    L.llama_log_set(on_log, ctypes.c_void_p(0))
    L.llama_backend_init()
    rss_before = _peak_rss_bytes()

    dry = bool(spec.get("dry_run", False))
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = int(spec.get("n_gpu_layers", 0))
    if dry:
        mp.no_alloc = True
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    elif not spec.get("use_mmap", True):
        mp.load_mode = L.LLAMA_LOAD_MODE_NONE
    t0 = time.perf_counter()
    model = L.llama_model_load_from_file(spec["model"].encode(), mp)
    if not model:
        raise SystemExit(json.dumps({"error": "load failed", "log": "".join(lines[-20:])}))

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
    cp.type_k = _KV_TYPES[spec.get("type_k", "f16")]
    cp.type_v = _KV_TYPES[spec.get("type_v", "f16")]
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit(json.dumps({"error": "context failed", "log": "".join(lines[-20:])}))
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
                raise SystemExit(json.dumps({"error": "decode failed"}))
            pos += len(chunk)
        t2 = time.perf_counter()
        n_decode = int(spec.get("decode_tokens", 8))
        tok = (L.llama_token * 1)(toks[-1])
        for _ in range(n_decode):
            if L.llama_decode(ctx, L.llama_batch_get_one(tok, 1)) != 0:
                raise SystemExit(json.dumps({"error": "decode failed"}))
        t3 = time.perf_counter()
        result.update(
            peak_rss_bytes=_peak_rss_bytes(),
            rss_before_load_bytes=rss_before,
            prompt_tok_s=n_prompt / (t2 - t1),
            decode_tok_s=n_decode / (t3 - t2) if n_decode else None,
        )

    model_bufs: dict[str, int] = {}
    kv_bufs: dict[str, int] = {}
    compute_bufs: dict[str, int] = {}
    output_bufs: dict[str, int] = {}
    flash = None
    kv_logical = 0
    for line in "".join(lines).splitlines():
        if m := _KV_SIZE.search(line):
            kv_logical += round(float(m.group(1)) * _MIB)
        if m := _MODEL_BUF.search(line):
            _add(model_bufs, m.group(1), m.group(2))
        elif m := _KV_BUF.search(line):
            _add(kv_bufs, m.group(1), m.group(2))
        elif "~llama_context" not in line and (m := _COMPUTE_BUF.search(line)):
            compute_bufs[m.group(1)] = round(float(m.group(2)) * _MIB)
        elif m := _OUTPUT_BUF.search(line):
            _add(output_bufs, m.group(1), m.group(2))
        elif "flash_attn" in line and "=" in line:
            flash = line.split("=")[-1].strip()
    result.update(
        model_buffers=model_bufs,
        kv_buffers=kv_bufs,
        kv_size_bytes=kv_logical,  # what the KV cache needs, also known in a dry run
        compute_buffers=compute_bufs,
        output_buffers=output_bufs,
        flash_attn_used=flash,
    )
    L.llama_free(ctx)
    L.llama_model_free(model)
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    out = run(spec)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def probe_in_child(spec: dict[str, Any], *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run :func:`run` in a fresh child process, so a crash or an out-of-memory kill of llama.cpp
    only costs this call. Raises ``EngineError`` with what the child said."""
    import subprocess

    from app.core.errors import EngineError

    try:
        out = subprocess.run(
            [sys.executable, "-m", "app.engine.memory_probe", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EngineError(f"llama.cpp did not finish within {timeout_s:.0f} s.") from None
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    try:
        data = json.loads(last) if last else {}
    except json.JSONDecodeError:
        data = {}
    if out.returncode != 0 or "error" in data:
        if out.returncode < 0:
            cause = f"it was killed by signal {-out.returncode}"
        else:
            cause = str(data.get("error") or f"exit code {out.returncode}")
        raise EngineError(
            f"The llama.cpp process failed: {cause}.",
            hint="The file may be damaged or need a newer llama.cpp.",
        )
    return data

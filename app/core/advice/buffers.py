"""The KV cache and the compute buffers of a llama.cpp run, sized the way llama.cpp sizes them.

- KV cache: ``src/llama-kv-cache.cpp``; cells = pad(n_ctx, 256) (``llama-context.cpp``); sliding-
  window layers keep pad(min(n_ctx, n_swa·n_seq + n_ubatch), 256) cells unless ``swa_full``
  (``llama-kv-cache-iswa.cpp``).
- recurrent state (Mamba, Gated DeltaNet and short-convolution layers of hybrids):
  ``src/llama-memory-recurrent.cpp``; a fixed state per sequence, whatever the context.
- compute buffer: the peak of ggml-alloc's graph allocation, fitted to llama.cpp's own dry runs
  (``tests/bench/estimate_accuracy.py`` and ``tests/core/advice/test_estimate.py`` check it).
- with a discrete GPU, big batches of CPU layers run on the GPU with each weight copied into its
  compute buffer (op offload, ``ggml-backend.cpp``).
"""

from __future__ import annotations

import re

from app.core.advice.placement import is_output_tensor
from app.core.advice.run_settings import RunSettings
from app.core.errors import EstimateError
from app.core.model import ggml_types
from app.core.model.gguf_header import TensorInfo
from app.core.model.info import ModelInfo, layer_of

KV_PAD_CELLS = 256  # GGML_PAD(n_ctx, 256), llama-context.cpp
_ATTN_Q = re.compile(r"^blk\.\d+\.attn_q\.weight$")
# From this many tokens in a ubatch a GPU runs an op whose weight is in RAM (ggml-cuda.cu
# GGML_OP_OFFLOAD_MIN_BATCH, default 32), copying the weight into its compute buffer first.
OP_OFFLOAD_MIN_BATCH = 32
# Tiny graph inputs and bookkeeping inside the compute buffer (positions, output ids, norms):
# the residual of the dry-run fit, ~10 KiB.
COMPUTE_CONST_BYTES = 16 * 1024
# Recurrent states are F32 whatever the KV cache type: create_memory passes GGML_TYPE_F32 as type_r
# and type_s (src/llama-model.cpp).
STATE_BYTES_PER_ELEMENT = 4
# What a recurrent layer's graph keeps live at its peak, in floats per ubatch token, fitted to dry
# runs of synthetic models with the converters' Qwen3.5, LFM2 and Granite 4.0-H shapes (one width
# varied at a time, ubatch 16-512; tests/test_hybrid_memory.py holds real shapes to it):
# - short convolution (LFM2): 7·n_embd;
# - Gated DeltaNet (Qwen3.5): 3·n_embd + 3·conv channels + 6·value heads; at 64 tokens or fewer,
#   3·n_embd + 2·conv channels + 6·heads beside three copies of the state;
# - Mamba-2 (Granite 4.0-H): 6.75·d_inner + 3·(2·groups·d_state) + 4·heads beside one copy of the
#   state (the scan returns it with its output). Mamba-1 gets the same, unmeasured.
SHORTCONV_EMBD_ROWS = 7
DELTA_NET_EMBD_ROWS, DELTA_NET_CONV_ROWS, DELTA_NET_HEAD_ROWS = 3, 3, 6
MAMBA_INNER_QUARTER_ROWS, MAMBA_BC_ROWS, MAMBA_HEAD_ROWS = 27, 3, 4  # 27 quarter rows: 6.75·d_inner


def kv_cells(model: ModelInfo, s: RunSettings) -> tuple[int, int]:
    """(cells of full-attention layers, cells of sliding-window layers)."""
    full = _pad(s.n_ctx, KV_PAD_CELLS)
    if not model.has_swa or s.swa_full:
        return full, full
    swa = _pad(min(full, model.sliding_window * s.n_seq + s.n_ubatch), KV_PAD_CELLS)
    return full, swa


def _pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def recurrent_state_bytes(model: ModelInfo, s: RunSettings) -> int:
    """One recurrent layer's state: its convolution window (r) and SSM state (s), F32, one row of
    each per sequence (recurrent_rs_size = max(1, n_seq_max), llama-model.cpp create_memory)."""
    cells = max(1, s.n_seq)
    return (model.conv_state_elements + model.ssm_state_elements) * STATE_BYTES_PER_ELEMENT * cells


def kv_layer_bytes(model: ModelInfo, s: RunSettings, il: int, cells_full: int, cells_swa: int) -> int:
    """The memory layer ``il`` keeps across tokens: K + V (row_size(type, its K or V width) · cells,
    ``ModelInfo.kv_widths``), plus the recurrent state where the layer has one (hybrids, SSMs).
    Without flash attention V is stored transposed and every layer's V is as wide as the widest
    (llama-kv-cache.cpp, TAG_V_CACHE_VARIABLE: Gemma 4's narrower sliding-window heads); a latent-
    attention (MLA) cache has no V."""
    state = recurrent_state_bytes(model, s) if model.is_recurrent(il) else 0
    k_width, v_width = model.kv_widths(il)
    if k_width == 0:
        return state
    if v_width and not s.flash_attn:
        v_width = max(model.kv_widths(j)[1] for j in range(model.n_layer))
    cells = cells_swa if model.swa_layers[il] else cells_full
    try:
        k = ggml_types.row_bytes(s.type_k, k_width)
        v = ggml_types.row_bytes(s.type_v, v_width) if v_width else 0
    except ValueError:
        # llama.cpp refuses such a context too: quantized rows must be whole blocks.
        raise EstimateError(
            f"A {s.type_k}/{s.type_v} KV cache does not fit this model's head size ({model.head_dim_k}).",
            hint="Use an F16 or Q8_0 KV cache.",
        ) from None
    return (k + v) * cells + state


def compute_buffer_bytes(
    model: ModelInfo,
    s: RunSettings,
    cells_full: int,
    cells_swa: int,
    *,
    filled_tokens: int | None = None,
    gpu: bool = False,
) -> int:
    """Peak of llama.cpp's graph allocation for a worst-case ubatch (CPU backend; ``gpu``: CUDA's).

    Fitted to dry runs (``app.engine.memory_probe`` with ``dry_run``) of llama-shaped models
    that vary one width at a time: the FFN stage keeps about 4·n_embd + 3·n_ff floats per token
    live; without flash attention the attention stage keeps 3·n_embd + 2·(q width) + 2·(kv width)
    floats per token plus the f32 scores (n_head·n_kv per token). The KQ masks (f16 with flash
    attention, f32 without) are inputs that live through the whole graph, one per cache kind.

    llama.cpp reserves the buffer for a full cache; a graph only spans the cells in use, padded
    to 256 (``llama_kv_cache::get_n_kv``). With ``filled_tokens`` the result is the part a run
    with that many tokens in the context has touched — what the resident set shows.
    """
    if filled_tokens is not None:
        used = _pad(max(filled_tokens, 1), KV_PAD_CELLS)
        cells_full, cells_swa = min(cells_full, used), min(cells_swa, used)
    ub = min(s.n_ubatch, s.n_batch)
    e = model.n_embd
    ff = max(model.n_ff, model.n_ff_expert * max(model.n_expert_used, 1))
    n_head = max(model.n_head) if model.n_head else 0
    qd = n_head * model.head_dim_k
    kvd = max(model.n_head_kv) * max(model.head_dim_k, model.head_dim_v) if model.n_head_kv else 0
    mask = _mask_bytes(model, s, cells_full, cells_swa)
    # CUDA keeps one n_embd row less live in the FFN stage: its compute buffers were exactly
    # 512·4·(3·n_embd + 3·n_ff) + mask for Llama-3.2-3B and 3.1-8B on the H100 (tests/gpu).
    ffn_stage = ub * 4 * ((3 if gpu else 4) * e + 3 * ff)
    # The query projection is live beside the query: twice as wide where it carries a gate
    # (Qwen3.5's attention: 4 MiB more per 2,048 query floats at ubatch 512 without flash attention).
    q_proj = max(
        (t.shape[1] for t in model.tensors if _ATTN_Q.match(t.name) and len(t.shape) > 1), default=qd
    )
    attn_stage = ub * 4 * (3 * e + qd + q_proj + 2 * kvd)
    if not s.flash_attn:
        attn_stage += cells_full * ub * n_head * 4
    return max(ffn_stage, attn_stage, _recurrent_stage(model, ub)) + mask + COMPUTE_CONST_BYTES


def _recurrent_stage(model: ModelInfo, ub: int) -> int:
    """Peak bytes of a recurrent layer's graph for a ubatch of ``ub`` tokens (see the fit above)."""
    r = model.recurrent
    if r is None or not model.has_recurrent:
        return 0
    state = model.ssm_state_elements + model.conv_state_elements
    if r.kind == "shortconv":
        return ub * 4 * SHORTCONV_EMBD_ROWS * model.n_embd
    if r.kind == "gated_delta_net":
        rows = DELTA_NET_EMBD_ROWS * model.n_embd + DELTA_NET_HEAD_ROWS * r.heads
        return 4 * max(
            ub * (rows + DELTA_NET_CONV_ROWS * r.conv_channels), ub * (rows + 2 * r.conv_channels) + 3 * state
        )
    rows = MAMBA_BC_ROWS * 2 * r.groups * r.state + MAMBA_HEAD_ROWS * r.heads
    # 4 bytes a float: ub · 4 · (rows + 27/4 · d_inner) = ub · (4·rows + 27·d_inner)
    return ub * (4 * rows + MAMBA_INNER_QUARTER_ROWS * r.inner) + 4 * state


def _mask_bytes(model: ModelInfo, s: RunSettings, cells_full: int, cells_swa: int) -> int:
    """The KQ masks: f16 with flash attention, f32 without; one per cache kind."""
    ub = min(s.n_ubatch, s.n_batch)
    elt = 2 if s.flash_attn else 4
    mask = cells_full * ub * elt
    if model.has_swa and cells_swa != cells_full:
        mask += cells_swa * ub * elt
    return mask


def inputs_compute_bytes(model: ModelInfo, s: RunSettings, cells_full: int, cells_swa: int) -> int:
    """CPU compute when the GPU runs the big batches: graph inputs live on the CPU (ggml-backend.cpp
    assigns them to the last backend) — the KQ masks and two n_embd rows per token (the embeddings
    and a copy on their way to the GPU). Exactly the CUDA_Host compute buffers on the H100 (tests/gpu),
    with any number of layers offloaded."""
    ub = min(s.n_ubatch, s.n_batch)
    return 2 * ub * model.n_embd * 4 + _mask_bytes(model, s, cells_full, cells_swa) + COMPUTE_CONST_BYTES


def offload_copy_bytes(
    model: ModelInfo, s: RunSettings, tensors: tuple[TensorInfo, ...], devices: list[str]
) -> int:
    """The GPU compute buffer's room for what CPU layers send over for a big batch (op offload).

    Each op with a weight in RAM starts its own split (ggml-backend.cpp "by starting a new split,
    the memory of the previously offloaded weights can be reused"), so one weight copy — the
    largest — is live at a time; the output matmul only sees n_outputs_max rows, and token_embd
    is read by get_rows, which is never offloaded. Attention follows onto the GPU with copies of
    one layer's K and V views, the cache itself staying in RAM. The sum over-predicts the H100's
    buffers by 0-80 MiB (they overlap a little) and never under-predicted them by more than 8 MiB.
    """
    if min(s.n_ubatch, s.n_batch) < OP_OFFLOAD_MIN_BATCH or "CPU" not in devices[: model.n_layer]:
        return 0
    cells_full, cells_swa = kv_cells(model, s)
    kv = max(kv_layer_bytes(model, s, il, cells_full, cells_swa)
             for il in range(model.n_layer) if devices[il] == "CPU")  # fmt: skip
    largest = 0
    for t in tensors:
        li = layer_of(t.name)
        on_cpu_layer = li is not None and li < model.n_layer and devices[li] == "CPU"
        output_offloaded = (is_output_tensor(t.name) and devices[model.n_layer] == "CPU"
                            and s.n_outputs_max >= OP_OFFLOAD_MIN_BATCH)  # fmt: skip
        if (on_cpu_layer or output_offloaded) and len(t.shape) >= 2:
            largest = max(largest, t.n_bytes)
    return largest + kv

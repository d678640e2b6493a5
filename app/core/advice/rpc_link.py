"""What running layers on workers costs on the network: the bytes each token sends and receives,
and the time that adds, from how llama.cpp's scheduler and RPC client move data
(``ggml-backend.cpp`` splits, ``ggml-rpc.cpp`` commands).

A token's graph is cut into splits, one per run of consecutive layers on one device. A split on a
worker receives its inputs (the hidden state, f32 ``n_embd`` per token; the positions; the KQ mask,
``n_kv`` cells per token, f16 with flash attention else f32) as SET_TENSOR commands, runs the cached
graph (GRAPH_RECOMPUTE: llama.cpp reuses the graph while its shapes hold, so the graph itself is
sent once per shape, every 256 cells), and hands back its output (the hidden state, or the logits
when the output layer is there) through GET_TENSOR, which waits: one round trip per split.
Every command carries a 9-byte header; a tensor travels as a 296-byte ``rpc_tensor``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.advice.run_settings import RunSettings
from app.core.model.info import ModelInfo

RPC_TENSOR_BYTES = 296  # sizeof(rpc_tensor), packed (ggml-rpc.cpp)
CMD_HEADER_BYTES = 9  # command byte + payload size
SET_TENSOR_BYTES = CMD_HEADER_BYTES + RPC_TENSOR_BYTES + 8  # + offset; then the data
GET_TENSOR_BYTES = CMD_HEADER_BYTES + RPC_TENSOR_BYTES + 16 + 8  # + offset, size; answer's size field
RECOMPUTE_BYTES = CMD_HEADER_BYTES + 4
# The link when nothing better is known: gigabit Ethernet for another machine, memory copies for
# this one (the proof runs workers on 127.0.0.1). Round trips are measured by the probe.
LAN_BYTES_S = 1e9 / 8 * 0.94
LOOPBACK_BYTES_S = 3e9


@dataclass(frozen=True)
class Split:
    device: str  # "GPU0" … (a worker's device)
    first: int  # first layer; n_layer is the output layer
    last: int
    attention_layers: int


def worker_splits(devices: list[str], s: RunSettings, model: ModelInfo) -> list[Split]:
    """The runs of consecutive layers (and the output layer, index n_layer) on workers' devices."""
    out: list[Split] = []
    for il, dev in enumerate(devices):
        if not s.is_rpc(dev):
            continue
        attn = 1 if il < model.n_layer and not model.is_recurrent(il) else 0
        if out and out[-1].device == dev and out[-1].last == il - 1:
            prev = out[-1]
            out[-1] = Split(dev, prev.first, il, prev.attention_layers + attn)
        else:
            out.append(Split(dev, il, il, attn))
    return out


def split_bytes(
    sp: Split, model: ModelInfo, s: RunSettings, n_tokens: int, n_kv: int, *, first: bool = False
) -> int:
    """Bytes one split moves for a batch of ``n_tokens`` with ``n_kv`` cells in the cache, both ways.
    ``first``: the first split on a worker after this machine's layers, which the scheduler sends the
    hidden state twice (counted by tests/byte_relay.py on SmolLM2 and Gemma 3; exact to a few bytes)."""
    total = RECOMPUTE_BYTES
    if sp.first < model.n_layer:  # it takes the hidden state in
        total += (2 if first else 1) * (SET_TENSOR_BYTES + n_tokens * model.n_embd * 4)
    if sp.attention_layers:
        # per KV cache (an iSWA model has two): the KQ mask (f16 with flash attention) and the
        # cells K and V are written to (int64 each); the positions once
        caches = [n_kv, min(n_kv, _pad(model.sliding_window + n_tokens))] if model.has_swa else [n_kv]
        mask_cell = 2 if s.flash_attn else 4
        total += SET_TENSOR_BYTES + n_tokens * 4
        total += sum(SET_TENSOR_BYTES + n_tokens * cells * mask_cell + 2 * (SET_TENSOR_BYTES + n_tokens * 8)
                     for cells in caches)  # fmt: skip
    if sp.first <= model.n_layer - 1 <= sp.last:  # the last layer keeps only the rows to output
        total += SET_TENSOR_BYTES + 4 * max(1, s.n_outputs_max)
    if sp.last >= model.n_layer:  # the logits of the last token come back
        total += GET_TENSOR_BYTES + model.n_vocab * 4 * max(1, s.n_outputs_max)
    else:
        total += GET_TENSOR_BYTES + n_tokens * model.n_embd * 4
    return total


def _pad(n: int) -> int:
    return -(-max(n, 1) // 256) * 256


@dataclass(frozen=True)
class LinkCost:
    bytes_per_token: int  # generation, both ways, all workers
    seconds_per_token: float  # generation
    prompt_seconds_per_token: float
    round_trips_per_token: int


def link_cost(model: ModelInfo, s: RunSettings, devices: list[str], depth: int,
              links: dict[str, tuple[float, float]]) -> LinkCost:  # fmt: skip
    """``links``: device → (round trip s, bytes/s) of its worker. ``depth``: tokens in the cache."""
    splits = worker_splits(devices, s, model)
    n_kv = _pad(depth)
    gen_bytes, gen_s, prompt_s = 0, 0.0, 0.0
    ub = max(1, min(s.n_ubatch, s.n_batch))
    for sp in splits:
        rtt, bw = links.get(sp.device, (0.0005, LAN_BYTES_S))
        first = sp.first > 0 and not s.is_rpc(devices[sp.first - 1])
        b = split_bytes(sp, model, s, 1, n_kv, first=first)
        gen_bytes += b
        gen_s += rtt + b / bw
        prompt_s += (rtt + split_bytes(sp, model, s, ub, n_kv, first=first) / bw) / ub
    return LinkCost(gen_bytes, gen_s, prompt_s, len(splits))

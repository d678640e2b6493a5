"""Planning over this machine and workers (``tailorlm worker``): the budget that includes them, and
whether pooling is worth it — against what this machine runs alone, often a smaller quantization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from app.core.advice.recommend import Advice, Budget, GpuBudget
from app.core.advice.rpc_link import LAN_BYTES_S, LOOPBACK_BYTES_S
from app.core.advice.speed_words import format_tok_s
from app.core.machine.workers import Worker
from app.core.units import MIB, format_bytes

# Kept free on each worker beyond what it reports (its buffers are allocated whole, and a worker
# without --mem reports the free RAM of a machine someone may be using): 5 %, at most 64 MiB.
WORKER_RESERVE_BYTES = 64 * MIB
WORKER_RESERVE_SHARE = 0.05


def with_workers(budget: Budget, workers: Sequence[Worker]) -> Budget:
    """``budget`` plus every usable worker's devices, first (llama.cpp lists RPC devices first).
    A worker's CPU is assumed as fast as this machine's RAM: the protocol does not say more."""
    lent = [
        GpuBudget(name=f"worker {w.endpoint}" + (f" #{d.index}" if len(w.devices) > 1 else ""),
                  free_bytes=d.free_bytes - min(WORKER_RESERVE_BYTES, int(d.free_bytes * WORKER_RESERVE_SHARE)),
                  bandwidth_bytes_s=budget.ram_bandwidth_bytes_s, backend="rpc", endpoint=str(w.endpoint),
                  rtt_s=w.rtt_s, link_bytes_s=LOOPBACK_BYTES_S if w.endpoint.loopback else LAN_BYTES_S)
        for w in workers if w.usable for d in w.devices
    ]  # fmt: skip
    if not lent:
        return budget
    local = budget.gpus if budget.can_offload else ()  # GPUs this build cannot use stay out
    notes = tuple(f"worker {w.endpoint}: {w.error}" for w in workers if not w.usable)
    return replace(budget, gpus=(*lent, *local), can_offload=True, notes=budget.notes + notes)


def pooling_words(pooled: Advice, alone: Advice) -> tuple[str, ...]:
    """Whether the workers are worth it, in sentences, from the plans with and without them."""
    p, a = pooled.recommended, alone.recommended
    lent = sum(d.total_bytes for d in p.estimate.devices if p.estimate.settings.is_rpc(d.device)) if p else 0
    if p is None or not lent:
        if a is not None:
            return ("The workers are not needed: the recommended plan runs on this machine alone.",)
        return ("Even with the workers nothing fits.",)
    link = (f"{format_bytes(lent)} on the workers; the network carries about "
            f"{p.speed.link_bytes_per_token / 1024:.1f} KiB per generated token "
            f"({p.speed.link_s_per_token * 1000:.1f} ms of each token's time).")  # fmt: skip
    words = [f"Pooled: {p.quant} at {p.n_ctx:,} tokens, {format_tok_s(p.speed.tok_s)} tok/s, with " + link]
    if a is None:
        words.append("This machine alone cannot run this model at any quantization: pooling is the only way.")
    elif a.quant == p.quant and a.n_ctx >= p.n_ctx:
        words.append(f"This machine alone runs {a.quant} too, at {format_tok_s(a.speed.tok_s)} tok/s.")
    elif a.speed.tok_s > p.speed.tok_s:
        words.append(f"Alone, this machine runs {a.quant} at {format_tok_s(a.speed.tok_s)} tok/s — faster "
                     f"than pooling, at lower quality ({a.quality.label} vs {p.quality.label}): pool for "
                     "quality, stay alone for speed.")  # fmt: skip
    else:
        words.append(f"Alone, this machine runs only {a.quant} ({format_tok_s(a.speed.tok_s)} tok/s): "
                     "pooling is better in quality and not slower.")  # fmt: skip
    return tuple(words)

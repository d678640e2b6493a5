"""Which device holds each layer: llama.cpp's split of a model between the CPU and the GPUs.

``src/llama-model.cpp`` assigns repeating layers to the GPU from the last one backwards
(``i_gpu_start = n_layer + 1 - n_gpu_layers``); the output layer counts as one and is offloaded
first; ``token_embd`` always stays on the CPU.
"""

from __future__ import annotations

from app.core.advice.run_settings import RunSettings


def layer_devices(n_layer: int, s: RunSettings) -> list[str]:
    """Device of each repeating layer and, last, of the output layer (index n_layer)."""
    n_gpu = max(0, min(s.n_gpu_layers, n_layer + 1))
    start = n_layer + 1 - n_gpu
    split = list(s.gpu_split) or [1.0]
    total = sum(split)
    bounds, acc = [], 0.0
    for w in split:
        acc += w / total
        bounds.append(acc)
    out: list[str] = []
    for il in range(n_layer + 1):
        if il < start or n_gpu == 0:
            out.append("CPU")
            continue
        frac = (il - start) / n_gpu
        gpu = next((i for i, b in enumerate(bounds) if frac < b), len(bounds) - 1)
        out.append(f"GPU{gpu}")
    return out


def is_output_tensor(name: str) -> bool:
    """A tensor of the output layer, which goes where ``layer_devices`` puts index n_layer."""
    return name.startswith(("output.", "output_norm."))

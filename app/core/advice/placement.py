"""Which device holds each layer: llama.cpp's split of a model between the CPU and the GPUs.

``src/llama-model.cpp`` assigns repeating layers to the GPU from the last one backwards
(``i_gpu_start = n_layer + 1 - n_gpu_layers``); the output layer counts as one and is offloaded
first; ``token_embd`` always stays on the CPU. A mixture-of-experts model may keep the routed
experts of its first layers in RAM while the rest of those layers (attention, router, shared
experts, KV cache) sits on the GPU: llama.cpp's ``--n-cpu-moe N`` / ``--cpu-moe``, which are
tensor buffer-type overrides to the CPU (``common/common.h``, ``llama-model-loader.cpp``).
"""

from __future__ import annotations

import re

from app.core.advice.run_settings import RunSettings

# The routed-expert tensors llama.cpp's --cpu-moe moves (common/common.h LLM_FFN_EXPS_REGEX):
# stacked gate/up/down (or fused gate_up) experts, weights and biases; shared experts (_shexp)
# and the router (ffn_gate_inp) stay with their layer.
EXPERTS_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_EXPERTS = re.compile(EXPERTS_PATTERN)


# Embedding tables a token reads one row of (get_rows): the input embedding (unless tied, when it is
# also the output matrix) and Gemma 3n/4's per-layer embeddings (llama-model.cpp, the input layer).
ROW_LOOKUP_TENSORS = frozenset({"token_embd.weight", "per_layer_token_embd.weight"})


def is_row_lookup(name: str, tied_embeddings: bool) -> bool:
    """A table of which each token reads one row, not the whole: see ROW_LOOKUP_TENSORS."""
    return name in ROW_LOOKUP_TENSORS and not (tied_embeddings and name == "token_embd.weight")


def is_expert_tensor(name: str) -> bool:
    return _EXPERTS.search(name) is not None


def expert_override_pattern(moe_cpu_layers: int) -> str | None:
    """The one regular expression for the experts of the first ``moe_cpu_layers`` layers, which
    llama.cpp is asked to keep in RAM (its ECMAScript ``std::regex_search`` and Python's
    ``re.search`` read it alike); None when no experts stay there."""
    if moe_cpu_layers <= 0:
        return None
    layers = "|".join(str(il) for il in range(moe_cpu_layers))
    return rf"^blk\.({layers}){EXPERTS_PATTERN}"


# The output matmul's weights (tied models use token_embd, duplicated for the output layer), kept in
# RAM by a buffer-type override when RunSettings.output_here; output_norm stays with its layer.
OUTPUT_HERE_PATTERN = r"^(output|token_embd)\.weight$"


def tensor_device(name: str, layer: int, devices: list[str], s: RunSettings) -> str:
    """Where llama.cpp puts a tensor of repeating layer ``layer`` given the layers' ``devices``: its
    layer's, unless it is a routed expert of one of the first ``s.moe_cpu_layers`` layers."""
    if layer < s.moe_cpu_layers and is_expert_tensor(name):
        return "CPU"
    return devices[layer]


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
    if s.output_here:
        out[n_layer] = "CPU"
    return out


def is_output_tensor(name: str) -> bool:
    """A tensor of the output layer, which goes where ``layer_devices`` puts index n_layer."""
    return name.startswith(("output.", "output_norm."))

"""Which layers of a model keep a recurrent state instead of a KV cache, and how big that state is.

Hybrids (Qwen3.5's Gated DeltaNet, LFM2's short convolutions, Granite 4.0-H's and Nemotron-H's Mamba-2)
and pure state-space models mark these layers in their GGUF keys; this module reads them the way
llama.cpp's ``load_hparams`` does (``src/models/<arch>.cpp``) and filters them the way
``llama_model::create_memory`` does (``src/llama-model.cpp``). :mod:`app.core.model.info` puts the
result into :class:`~app.core.model.info.ModelInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.model import sanity
from app.core.model.gguf_header import GGUFHeader

# Which layers keep a recurrent state instead of a KV cache, per architecture, as load_hparams marks
# them (src/models/<arch>.cpp) and llama_model::create_memory filters them (src/llama-model.cpp):
# "every": all of them (llm_arch_is_recurrent); "every+kv": all, and all attend too (Falcon-H1 runs
# both side by side); "no_kv": those whose head_count_kv is 0; "no_kv_no_ff": those with neither KV
# heads nor an FFN (Nemotron-H: attention layers have no FFN either); "listed": the
# attention.recurrent_layers flags, else all but every full_attention_interval-th layer.
RECURRENT_RULES: dict[str, str] = {
    "mamba": "every", "mamba2": "every", "falcon-h1": "every+kv",
    "jamba": "no_kv", "granitehybrid": "no_kv", "lfm2": "no_kv", "lfm2moe": "no_kv",
    "nemotron_h": "no_kv_no_ff", "nemotron_h_moe": "no_kv_no_ff",
    "qwen3next": "listed", "qwen35": "listed", "qwen35moe": "listed",
}  # fmt: skip
FULL_ATTENTION_INTERVAL = 4  # llama.cpp src/models/qwen35.cpp (and qwen3next, qwen35moe) when absent
# What the recurrent layers compute (their graphs: src/models/{lfm2,mamba-base,delta-net-base}.cpp);
# every other architecture above runs Mamba-2. Mamba-1 and Jamba have no groups (their
# load_hparams does not read ssm.group_count).
RECURRENT_KINDS: dict[str, str] = {
    "lfm2": "shortconv", "lfm2moe": "shortconv", "mamba": "mamba", "jamba": "mamba",
    "qwen3next": "gated_delta_net", "qwen35": "gated_delta_net", "qwen35moe": "gated_delta_net",
}  # fmt: skip


@dataclass(frozen=True)
class RecurrentShape:
    """What each recurrent layer keeps per sequence and computes with (llama_hparams' ssm_* keys,
    or n_shortconv_l_cache for a short convolution)."""

    kind: str  # "shortconv" (LFM2) | "mamba" (Mamba-1, Jamba) | "mamba2" | "gated_delta_net" (Qwen3.5)
    conv_kernel: int  # d_conv, or the short convolution's l_cache
    conv_channels: int  # what the convolution runs over: n_embd, or d_inner + 2·groups·d_state
    inner: int = 0  # d_inner: the SSM's width, or the delta net's value width
    state: int = 0  # d_state, or the delta net's key head width
    groups: int = 0
    heads: int = 0  # time_step_rank: SSM heads, or the delta net's value heads

    @property
    def conv_state_elements(self) -> int:
        """llama_hparams::n_embd_r: the convolution's last d_conv - 1 inputs (src/llama-hparams.cpp)."""
        return max(self.conv_kernel - 1, 0) * self.conv_channels

    @property
    def ssm_state_elements(self) -> int:
        """llama_hparams::n_embd_s: the SSM (or delta-rule) state matrix."""
        return self.state * self.inner


def _flags(header: GGUFHeader, key: str, n_layer: int) -> tuple[bool, ...] | None:
    """A per-layer array of booleans (get_key_or_arr: exactly one per layer), or None if absent."""
    value = header.arch_key(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n_layer or not all(isinstance(v, bool) for v in value):
        raise sanity.bad_value(f"{header.architecture}.{key}", f"is not {n_layer} true/false flags")
    return tuple(value)


def _required(header: GGUFHeader, key: str, lo: int, hi: int) -> int:
    if header.arch_key(key) is None:
        raise sanity.bad_value(f"{header.architecture}.{key}", "is missing, which this architecture needs")
    return sanity.arch_int(header, key, 0, lo, hi)


def recurrent_shape(header: GGUFHeader, n_embd: int) -> RecurrentShape:
    """The recurrent layers' shape from the keys their load_hparams requires (get_key, no default)."""
    arch = header.architecture
    kind = RECURRENT_KINDS.get(arch, "mamba2")
    if kind == "shortconv":
        return RecurrentShape(kind, _required(header, "shortconv.l_cache", 1, sanity.MAX_CONV_KERNEL), n_embd)
    d_conv = _required(header, "ssm.conv_kernel", 0, sanity.MAX_CONV_KERNEL)
    inner = _required(header, "ssm.inner_size", 0, sanity.MAX_FF)
    state = _required(header, "ssm.state_size", 0, sanity.MAX_SSM_STATE)
    heads = _required(header, "ssm.time_step_rank", 0, sanity.MAX_WIDTH)
    groups = 0 if kind == "mamba" else _required(header, "ssm.group_count", 0, sanity.MAX_HEADS)
    return RecurrentShape(kind, d_conv, inner + 2 * groups * state, inner, state, groups, heads)


def recurrence(
    header: GGUFHeader, n_layer: int, n_mtp: int, heads_kv: tuple[int, ...], ffs: tuple[int, ...]
) -> tuple[tuple[bool, ...], tuple[int, ...]]:
    """(recurrent layers, KV heads where a layer keeps a KV cache, else 0), as llama.cpp's
    create_memory filters them; draft-head blocks (il >= trunk) get neither in the main context."""
    trunk, rule, layers = n_layer - n_mtp, RECURRENT_RULES.get(header.architecture), range(n_layer)
    if rule is None:
        return (), tuple(n if il < trunk else 0 for il, n in enumerate(heads_kv))
    if rule == "listed":
        flags = _flags(header, "attention.recurrent_layers", n_layer)
        if flags is None:
            every = sanity.arch_int(
                header, "full_attention_interval", FULL_ATTENTION_INTERVAL, 1, sanity.MAX_LAYERS
            )
            flags = tuple((il + 1) % every != 0 for il in layers)
    else:  # "every", "every+kv", "no_kv", "no_kv_no_ff"
        flags = tuple(rule.startswith("every") or (heads_kv[il] == 0 and (rule == "no_kv" or ffs[il] == 0))
                      for il in layers)  # fmt: skip
    recr = tuple(il < trunk and flags[il] for il in layers)
    attends = {
        "every": [False] * n_layer,
        "every+kv": [True] * n_layer,
        "no_kv": [not r for r in recr],  # create_memory's default filter: !is_recr(il)
        "no_kv_no_ff": [not recr[il] and ffs[il] == 0 for il in layers],
        "listed": [il < trunk and not recr[il] for il in layers],
    }[rule]
    return recr, tuple(n if a else 0 for n, a in zip(heads_kv, attends, strict=True))

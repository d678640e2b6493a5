"""What one family of architectures adds to :mod:`app.core.model.hf_arch`'s description of a checkpoint.

``hf_arch`` knows what every converter class shares (``conversion/base.py`` TextModel: the common
metadata keys, the F32 rules, the per-block loop). A family module (``hf_hybrid``, ``hf_gpt_oss``,
``hf_gemma4``, ``hf_glm``) describes the rest for its architectures as one :class:`Family`: which HF
model types it converts, transformers' defaults for them, its tensor tables, and the hooks below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.model.hf_tensors import ArchTable

Config = dict[str, Any]  # the merged text config (hf_arch.text_config)
Dims = dict[str, int]  # named dimensions (hf_arch._dims), the names the tensor tables use


def no_dims(cfg: Config, arch: str, dims: Dims) -> Dims:
    return {}


def no_features(cfg: Config, arch: str) -> frozenset[str]:
    return frozenset()


def no_blocks(cfg: Config, arch: str) -> int:
    return 0


def same_block(cfg: Config, arch: str, dims: Dims, bid: int) -> tuple[Dims, frozenset[str]]:
    return {}, frozenset()


def no_metadata(cfg: Config, arch: str, dims: Dims) -> dict[str, Any]:
    return {}


def no_type(cfg: Config, name: str) -> str | None:
    return None


def no_file_type(cfg: Config, dtype: str) -> int | None:
    return None


@dataclass(frozen=True)
class Family:
    """One family's part of the config.json → GGUF description; every hook gets the merged config
    and the GGUF architecture."""

    model_types: Mapping[str, str]  # HF model_type → GGUF general.architecture
    defaults: Mapping[str, Mapping[str, Any]]  # model_type → what transformers fills in when absent
    tensors: Mapping[str, ArchTable] = field(default_factory=dict)  # GGUF arch → its tensor table
    # More dimensions, from the config and the common ones (hf_arch._dims).
    dims: Callable[[Config, str, Dims], Dims] = no_dims
    # Table features of the whole model (beside hf_arch's common ones: "untied", "qkv_bias", ...).
    features: Callable[[Config, str], frozenset[str]] = no_features
    # Block ``bid``'s own widths (overriding the common ones) and the table features it turns on.
    block: Callable[[Config, str, Dims, int], tuple[Dims, frozenset[str]]] = same_block
    # Draft-head (multi-token prediction) blocks the converter appends after the trunk.
    mtp_blocks: Callable[[Config, str], int] = no_blocks
    # Metadata keys the converter class adds or overrides.
    metadata: Callable[[Config, str, Dims], dict[str, Any]] = no_metadata
    # A ggml type the converter writes a tensor in whatever the --outtype (e.g. MXFP4 experts).
    tensor_type: Callable[[Config, str], str | None] = no_type
    # general.file_type when the converter sets it from the checkpoint rather than the --outtype.
    file_type: Callable[[Config, str], int | None] = no_file_type

    @property
    def archs(self) -> frozenset[str]:
        return frozenset(self.model_types.values())

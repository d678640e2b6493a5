"""Which GGUF tensor a checkpoint tensor becomes under llama.cpp's converter.

Read backwards from the tensor tables :mod:`app.core.model.hf_arch` builds headers from
(``gguf-py/gguf/tensor_mapping.py`` in llama.cpp is the forward direction): per-expert tensors map
to their stacked tensor, a fused tensor the converter splits to its first part.
"""

from __future__ import annotations

import re
from functools import cache

from app.core.errors import UnsupportedArchitectureError
from app.core.model.hf_arch import MODEL_TYPES, NO_LM_HEAD, TABLES

# Multimodal checkpoints keep the language model under a prefix (older and newer transformers).
_PREFIXES = (("language_model.model.", "model."), ("model.language_model.", "model."),
             ("language_model.lm_head.", "lm_head."), ("model.text_model.", "model."))  # fmt: skip


@cache
def _name_patterns(arch: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    glob, block = TABLES[arch]
    out = []
    for spec in glob + block:
        if spec.hf is None:
            continue
        pattern = re.escape(spec.hf).replace(r"\{bid\}", r"(?P<bid>\d+)").replace(r"\{xid\}", r"\d+")
        out.append((re.compile(pattern + "$"), spec.gguf))
    return tuple(out)


def gguf_tensor_name(hf_name: str, arch: str) -> str | None:
    """The GGUF tensor a checkpoint tensor becomes (per-expert tensors map to their stacked tensor),
    or None if the converter drops it or we do not know it. ``arch``: GGUF arch or HF model_type."""
    arch = MODEL_TYPES.get(arch, arch)
    if arch not in TABLES:
        raise UnsupportedArchitectureError(f"Unknown architecture {arch!r}.")
    for old, new in _PREFIXES:
        if hf_name.startswith(old):
            hf_name = new + hf_name[len(old) :]
    if arch in NO_LM_HEAD and hf_name.startswith("lm_head."):
        return None
    for pattern, gguf in _name_patterns(arch):
        m = pattern.match(hf_name)
        if m:
            return gguf.format(bid=m.groupdict().get("bid", ""))
    return None

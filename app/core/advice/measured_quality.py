"""What ``tailorlm quality`` measured on this machine, kept so the advisor can show it beside the
published numbers it plans with (those come from one 8B model; a small model loses more).

Keyed by architecture and exact parameter count, which every quantization of a model shares.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from app.core import paths
from app.core.model.info import ModelInfo

_FILE = "quality-measurements.json"


def model_key(model: ModelInfo) -> str:
    return f"{model.architecture}:{model.n_params}"


# What a kept measurement must hold, and of which type; anything else in the file (edited by hand,
# written by another version, damaged) is ignored rather than shown or crashed on.
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kld_mean": (int, float),
    "top1_agreement": (int, float),
    "reference": str,
}


def _load() -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        data = json.loads((paths.data_dir() / _FILE).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def _valid(entry: object) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(entry.get(k), kind) and not isinstance(entry.get(k), bool) for k, kind in _FIELDS.items()
    )


def record(model: ModelInfo, reference_quant: str, candidate_quant: str, result: dict[str, Any]) -> None:
    """Keep the latest measurement of ``candidate_quant`` against ``reference_quant`` for this model."""
    data = _load()
    entry = {
        k: result.get(k) for k in ("kld_mean", "kld_p99", "top1_agreement", "ppl_ref", "ppl_cand", "n_tokens")
    }
    if not isinstance(data.get(model_key(model)), dict):
        data[model_key(model)] = {}
    data[model_key(model)][candidate_quant] = {
        **entry,
        "reference": reference_quant,
        "at": time.time(),
    }
    target = paths.data_dir() / _FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(target)


def measured(model: ModelInfo) -> dict[str, dict[str, Any]]:
    """``{candidate_quant: {kld_mean, top1_agreement, reference, …}}`` measured for this model."""
    found = _load().get(model_key(model), {})
    if not isinstance(found, dict):
        return {}
    return {str(quant): entry for quant, entry in found.items() if _valid(entry)}

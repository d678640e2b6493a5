"""A hostile or careless config.json never crashes, hangs or sizes a model: each bad value is one
clear ModelReadError naming the key, read from a real checkpoint folder (and through the CLI)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import CorruptModelError, ModelReadError, UnsupportedArchitectureError
from app.core.model.sanity import MAX_LAYERS
from app.core.model.source import model_from_checkpoint
from tests.core.model.test_source import _checkpoint

NAN, INF = math.nan, math.inf
# Tiny but real configs of three of the supported families (the structure of SmolLM2, Qwen3-MoE and
# a multimodal Gemma 3; small widths keep the checkpoint's shards a few KB).
LLAMA: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 2048,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}  # fmt: skip
QWEN3_MOE: dict[str, Any] = {
    "model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 256, "max_position_embeddings": 2048,
}  # fmt: skip
GEMMA3_TEXT: dict[str, Any] = {
    "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 256, "sliding_window": 512,
}  # fmt: skip
GEMMA3 = {"model_type": "gemma3", "text_config": GEMMA3_TEXT}
BASES = {"llama": LLAMA, "qwen3_moe": QWEN3_MOE, "gemma3": GEMMA3, "phi3": {**LLAMA, "model_type": "phi3"},
         "gemma2": {**LLAMA, "model_type": "gemma2", "head_dim": 16}}  # fmt: skip

C, U = CorruptModelError, UnsupportedArchitectureError
# (base, the keys it changes, the key the message must name, the error). A value of ... removes the key.
CASES: list[tuple[str, dict[str, Any], str, type[ModelReadError]]] = [
    ("llama", {"num_hidden_layers": 10**12}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": MAX_LAYERS + 1}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": -1}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": 0}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": 2.0}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": "2"}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": True}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": [2]}, "num_hidden_layers", C),
    ("llama", {"num_hidden_layers": ...}, "num_hidden_layers", U),
    ("llama", {"hidden_size": NAN}, "hidden_size", C),
    ("llama", {"hidden_size": INF}, "hidden_size", C),
    ("llama", {"hidden_size": 2**63}, "hidden_size", C),
    ("llama", {"hidden_size": -64}, "hidden_size", C),
    ("llama", {"hidden_size": "64"}, "hidden_size", C),
    ("llama", {"hidden_size": {"width": 64}}, "hidden_size", C),
    ("llama", {"num_attention_heads": NAN}, "num_attention_heads", C),
    ("llama", {"num_attention_heads": 0}, "num_attention_heads", C),
    ("llama", {"num_attention_heads": [4, 4]}, "num_attention_heads", C),
    ("llama", {"num_attention_heads": False}, "num_attention_heads", C),
    ("llama", {"num_attention_heads": 128, "num_key_value_heads": 128}, "num_attention_heads", C),
    ("llama", {"num_key_value_heads": 3}, "num_key_value_heads", C),
    ("llama", {"num_key_value_heads": -1}, "num_key_value_heads", C),
    ("llama", {"num_key_value_heads": "2"}, "num_key_value_heads", C),
    ("llama", {"head_dim": 0}, "head_dim", C),
    ("llama", {"head_dim": 10**9}, "head_dim", C),
    ("llama", {"intermediate_size": -1}, "intermediate_size", C),
    ("llama", {"intermediate_size": 0}, "intermediate_size", U),
    ("llama", {"intermediate_size": "big"}, "intermediate_size", C),
    ("llama", {"vocab_size": 2**40}, "vocab_size", C),
    ("llama", {"vocab_size": 0}, "vocab_size", C),
    ("llama", {"vocab_size": 1.5}, "vocab_size", C),
    ("llama", {"max_position_embeddings": -1}, "max_position_embeddings", C),
    ("llama", {"max_position_embeddings": 1e30}, "max_position_embeddings", C),
    ("llama", {"max_position_embeddings": 2**40}, "max_position_embeddings", C),
    ("qwen3_moe", {"max_position_embeddings": ..., "n_positions": [2048]}, "n_positions", C),
    ("llama", {"rope_theta": NAN}, "rope_theta", C),
    ("llama", {"rope_theta": -1}, "rope_theta", C),
    ("llama", {"rope_theta": "1e4"}, "rope_theta", C),
    ("llama", {"rms_norm_eps": INF}, "rms_norm_eps", C),
    ("llama", {"rms_norm_eps": 2.0}, "rms_norm_eps", C),
    ("llama", {"rope_scaling": "linear"}, "rope_scaling", C),
    ("llama", {"rope_scaling": ["linear", 8.0]}, "rope_scaling", C),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": NAN}}, "rope_scaling.factor", C),
    ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": "x"}}, "rope_scaling.factor", C),
    ("llama", {"rope_scaling": {"rope_type": 3, "factor": 2.0}}, "rope_scaling.rope_type", C),
    (
        "llama",
        {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": -5}},
        "rope_scaling.original_max_position_embeddings",
        C,
    ),
    ("llama", {"rope_parameters": 7}, "rope_parameters", C),
    ("llama", {"rope_parameters": {"full_attention": "x"}}, "rope_parameters.full_attention", C),
    (
        "llama",
        {"rope_parameters": {"sliding_attention": {"rope_theta": NAN}}},
        "rope_parameters.sliding_attention.rope_theta",
        C,
    ),
    ("llama", {"tie_word_embeddings": "no"}, "tie_word_embeddings", C),
    ("llama", {"attention_bias": 1}, "attention_bias", C),
    ("llama", {"model_type": ["llama"]}, "model_type", C),
    ("llama", {"model_type": 5}, "model_type", C),
    ("gemma3", {"text_config": "gemma3_text"}, "text_config", C),
    ("gemma3", {"text_config": [GEMMA3_TEXT]}, "text_config", C),
    ("gemma3", {"text_config": {**GEMMA3_TEXT, "num_hidden_layers": 10**12}}, "num_hidden_layers", C),
    ("gemma3", {"text_config": {**GEMMA3_TEXT, "sliding_window": -1}}, "sliding_window", C),
    (
        "gemma3",
        {"text_config": {**GEMMA3_TEXT, "sliding_window_pattern": 10**9}},
        "sliding_window_pattern",
        C,
    ),
    ("gemma2", {"attn_logit_softcapping": -1.0}, "attn_logit_softcapping", C),
    ("gemma2", {"final_logit_softcapping": "x"}, "final_logit_softcapping", C),
    ("phi3", {"partial_rotary_factor": NAN}, "partial_rotary_factor", C),
    ("phi3", {"partial_rotary_factor": 5.0}, "partial_rotary_factor", C),
    ("qwen3_moe", {"num_experts": 10**6}, "num_experts", C),
    ("qwen3_moe", {"num_experts_per_tok": 0}, "num_experts_per_tok", U),
    ("qwen3_moe", {"num_experts_per_tok": 9}, "num_experts_per_tok", C),
    ("qwen3_moe", {"mlp_only_layers": "all"}, "mlp_only_layers", C),
    ("qwen3_moe", {"mlp_only_layers": [10**12]}, "mlp_only_layers", C),
    ("qwen3_moe", {"mlp_only_layers": [0] * 10**6}, "mlp_only_layers", C),
    ("qwen3_moe", {"decoder_sparse_step": 0}, "decoder_sparse_step", C),
    ("qwen3_moe", {"moe_intermediate_size": 0, "intermediate_size": 0}, "moe_intermediate_size", U),
]


def _config(base: str, changes: dict[str, Any]) -> dict[str, Any]:
    config = {**BASES[base], **changes}
    return {k: v for k, v in config.items() if v is not ...}


def _folder(tmp_path: Path, config: dict[str, Any]) -> Path:
    """A checkpoint folder with real safetensors shards (of the tiny llama) and this config.json,
    written as JSON writes it (NaN and Infinity included)."""
    folder = tmp_path / "ckpt"
    _checkpoint(folder, LLAMA)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("base", sorted(BASES))
def test_the_good_bases_load(tmp_path: Path, base: str) -> None:
    """The control: each base config, unchanged, describes a model."""
    folder = tmp_path / base
    _checkpoint(folder, BASES[base])
    info = model_from_checkpoint(folder)
    assert info.n_layer == 2 and info.n_params > 0


@pytest.mark.parametrize(
    ("base", "changes", "key", "error"), CASES, ids=[f"{i:02d}-{c[2]}" for i, c in enumerate(CASES)]
)
def test_a_bad_config_is_one_clear_error(
    tmp_path: Path, base: str, changes: dict[str, Any], key: str, error: type[ModelReadError]
) -> None:
    folder = _folder(tmp_path, _config(base, changes))
    t0 = time.monotonic()
    with pytest.raises(ModelReadError) as err:
        model_from_checkpoint(folder)
    elapsed = time.monotonic() - t0
    assert type(err.value) is error, err.value
    message = err.value.user_message()
    assert f"'{key}'" in message and "config.json" in message
    assert "\n" not in message and len(message) < 400
    assert elapsed < 2.0, f"{elapsed:.1f} s"


def test_the_largest_config_within_the_bounds_still_loads(tmp_path: Path) -> None:
    """The bounds refuse damage, not big models: llama.cpp's own layer limit is accepted."""
    config = {**LLAMA, "num_hidden_layers": MAX_LAYERS}
    folder = tmp_path / "deep"
    _checkpoint(folder, config)
    t0 = time.monotonic()
    assert model_from_checkpoint(folder).n_layer == MAX_LAYERS
    assert time.monotonic() - t0 < 5.0


def _advise(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", "advise", str(folder), "--json", "--no-bandwidth"],
                          capture_output=True, text=True, timeout=120, check=False, env=os.environ.copy())  # fmt: skip


@pytest.mark.parametrize(
    ("base", "changes", "key"),
    [("llama", {"num_hidden_layers": 10**12}, "num_hidden_layers"),
     ("llama", {"rope_scaling": "linear"}, "rope_scaling"),
     ("gemma3", {"text_config": [GEMMA3_TEXT]}, "text_config"),
     ("llama", {"hidden_size": NAN}, "hidden_size")],
)  # fmt: skip
def test_advise_says_so_in_one_line(tmp_path: Path, base: str, changes: dict[str, Any], key: str) -> None:
    out = _advise(_folder(tmp_path, _config(base, changes)))
    assert out.returncode == 2, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.startswith("tailorlm: ") and out.stderr.count("\n") == 1
    assert f"'{key}'" in out.stderr

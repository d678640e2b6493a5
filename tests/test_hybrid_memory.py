"""Hybrid models (recurrent + attention layers) against llama.cpp's own allocations.

Synthetic GGUFs with the real shapes of Qwen3.5-0.8B, LFM2-350M and Granite-4.0-H-350M (configs:
tests/hybrid_models.py), cut to their first layers so that both kinds of layer are present, are
sized by llama.cpp's dry run (``app.engine.memory_probe`` with ``dry_run``). Its log gives the KV
cache and the recurrent state ("llama_memory_recurrent: size = …") to 0.01 MiB, which is the
tolerance; the compute buffer is a fit (app.core.advice.buffers), held to a few MiB.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.advice.buffers import kv_cells, kv_layer_bytes, recurrent_state_bytes
from app.core.advice.estimate import RunSettings, estimate
from app.core.model.hf_arch import header_from_hf_config
from app.core.model.info import ModelInfo, model_info_from_header
from app.core.model.source import model_from_gguf
from tests.hybrid_models import GRANITE_4_H_350M, HYBRIDS, QWEN35_08B

pytest.importorskip("llama_cpp")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-models"  # shared with tests/bench/estimate_accuracy.py
MIB = 1 << 20
# Layers kept: enough for attention and recurrent layers both (Qwen3.5: 2 of 8 attend; LFM2: 2 of 6;
# Granite: 2 of 14).
LAYERS = {"qwen3.5-0.8b": 8, "lfm2-350m": 6, "granite-4.0-h-350m": 14}
# llama.cpp logs sizes in MiB with two decimals: each logged size is within 0.005 MiB.
LOG_ROUNDING = 0.005 * MIB
# The compute buffer is a fit (app.core.advice.buffers); on these shapes it was within +2.0 MiB
# (LFM2's FFN keeps one n_embd row less than Llama's) and -1.5 MiB (Granite's attention without
# flash attention) of llama.cpp's.
COMPUTE_TOLERANCE = 2.5 * MIB
_RS_SIZE = re.compile(r"llama_memory_recurrent: size =\s+([\d.]+) MiB")
# memory_probe reports the KV cache's size but not the recurrent state's: run it in a child and
# read that line from the same log (app.engine.llama_log.parse_buffers sees every line first).
_CHILD = """
import json, sys
import app.engine.memory_probe as probe
logs = []
parse = probe.parse_buffers
probe.parse_buffers = lambda log: (logs.append(log), parse(log))[1]
out = []
for spec in json.loads(sys.argv[1]):
    result = probe.run(spec)
    result["log"] = logs[-1]
    out.append(result)
print(json.dumps(out))
"""


def _model_file(name: str) -> Path:
    from tests.synthetic import write_synthetic_gguf

    path = CACHE / f"{name}-{LAYERS[name]}L-F16.gguf"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        write_synthetic_gguf(HYBRIDS[name], part, n_layers=LAYERS[name])
        part.rename(path)
    return path


def dry_runs(path: Path, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """llama.cpp's buffer sizes for each spec, plus ``rs_size_bytes`` (the recurrent state)."""
    specs = [{"model": str(path), "dry_run": True, **s} for s in specs]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(specs)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True,
    )  # fmt: skip
    results: list[dict[str, Any]] = json.loads(out.stdout)
    for r in results:
        sizes = _RS_SIZE.findall(r.pop("log"))
        r["rs_size_bytes"] = round(float(sizes[-1]) * MIB) if sizes else 0
    return results


def _info(config: dict[str, Any]) -> ModelInfo:
    return model_info_from_header(header_from_hf_config(config), source="config", source_kind="hf_dir")


@pytest.mark.parametrize("name", list(HYBRIDS))
def test_kv_cache_and_state_are_what_llama_cpp_allocates(name: str) -> None:
    path = _model_file(name)
    model = model_from_gguf(path)
    assert model.has_recurrent and any(model.n_head_kv)  # both kinds of layer survive the cut
    runs = [(4096, True), (32768, True), (131072, True), (4096, False), (32768, False)]
    measured = dry_runs(path, [{"n_ctx": c, "flash_attn": "on" if fa else "off"} for c, fa in runs])
    for (n_ctx, fa), m in zip(runs, measured, strict=True):
        settings = RunSettings(n_ctx=n_ctx, flash_attn=fa)
        cpu = estimate(model, None, settings).device("CPU")
        llama = m["kv_size_bytes"] + m["rs_size_bytes"]
        assert m["rs_size_bytes"] > 0
        assert abs(cpu.kv_bytes - llama) <= 2 * LOG_ROUNDING, (n_ctx, fa, cpu.kv_bytes, llama)
        compute = m["compute_buffers"]["CPU"]
        assert abs(cpu.compute_bytes - compute) <= COMPUTE_TOLERANCE, (n_ctx, fa, cpu.compute_bytes, compute)


@pytest.mark.parametrize("name", list(HYBRIDS))
def test_the_weights_are_what_llama_cpp_maps(name: str) -> None:
    """Every tensor but a draft head's: llama.cpp skips Qwen3.5's MTP block unless asked for it."""
    path = _model_file(name)
    model = model_from_gguf(path)
    (m,) = dry_runs(path, [{"n_ctx": 512, "dry_run": False, "prompt_tokens": 16, "decode_tokens": 1}])
    cpu = estimate(model, None, RunSettings(n_ctx=512)).device("CPU")
    mapped = sum(m["model_buffers"].values())
    assert abs(cpu.weights_bytes + cpu.repack_bytes - mapped) <= len(m["model_buffers"]) * LOG_ROUNDING, (
        mapped
    )
    if model.n_layer_mtp:
        assert cpu.weights_bytes < sum(t.n_bytes for t in model.tensors)


def test_the_state_is_the_same_at_every_context_and_per_sequence() -> None:
    path = _model_file("granite-4.0-h-350m")
    model = model_from_gguf(path)
    small, large = dry_runs(path, [{"n_ctx": 512}, {"n_ctx": 65536}])
    assert small["rs_size_bytes"] == large["rs_size_bytes"] > 0
    assert small["kv_size_bytes"] * 128 == large["kv_size_bytes"]  # 512 → 65,536 cells
    one = recurrent_state_bytes(model, RunSettings())
    assert recurrent_state_bytes(model, RunSettings(n_seq=3)) == 3 * one  # one row per sequence
    assert abs(sum(model.recurrent_layers) * one - large["rs_size_bytes"]) <= LOG_ROUNDING


def test_offloaded_layers_take_their_state_to_the_gpu() -> None:
    model = _info(GRANITE_4_H_350M)
    s = RunSettings(n_ctx=8192, n_gpu_layers=model.n_layer + 1, has_gpu=True)
    cells_full, cells_swa = kv_cells(model, s)
    total = sum(kv_layer_bytes(model, s, il, cells_full, cells_swa) for il in range(model.n_layer))
    est = estimate(model, None, s)
    assert est.device("GPU0").kv_bytes == total and est.device("CPU").kv_bytes == 0


def _all_attention(config: dict[str, Any]) -> dict[str, Any]:
    """The same widths with every layer an attention layer."""
    if "text_config" in config:  # Qwen3.5
        text = config["text_config"]
        return {
            **config,
            "text_config": {**text, "layer_types": ["full_attention"] * text["num_hidden_layers"]},
        }
    return {**config, "layer_types": ["attention"] * config["num_hidden_layers"]}


@pytest.mark.parametrize(
    ("config", "most"),
    [(QWEN35_08B, 0.26), (GRANITE_4_H_350M, 0.13)],
    ids=["qwen3.5-0.8b", "granite-4.0-h-350m"],
)
def test_a_262k_context_on_a_hybrid_costs_a_fraction_of_the_same_widths_as_dense(
    config: dict[str, Any], most: float
) -> None:
    hybrid = _info(config)
    dense = _info(_all_attention(config))
    assert not dense.has_recurrent
    s = RunSettings(n_ctx=262144)
    kv_hybrid = estimate(hybrid, None, s).device("CPU").kv_bytes
    kv_dense = estimate(dense, None, s).device("CPU").kv_bytes
    attending = sum(1 for n in hybrid.n_head_kv if n)
    trunk = hybrid.n_layer - hybrid.n_layer_mtp
    # The attending layers' share of the dense cache, plus a fixed state per recurrent layer.
    per_layer = kv_dense // trunk
    assert kv_hybrid == attending * per_layer + sum(hybrid.recurrent_layers) * recurrent_state_bytes(
        hybrid, s
    )
    assert kv_hybrid < most * kv_dense

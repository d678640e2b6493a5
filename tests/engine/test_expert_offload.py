"""Experts kept in RAM through llama.cpp's tensor buffer-type overrides, on a real load: llama.cpp
itself reports which tensors it placed, and they are exactly the estimator's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app.core.advice.estimate import RunSettings, layer_devices
from app.core.advice.placement import tensor_device
from app.core.model.gguf_header import read_gguf_file
from app.core.model.info import layer_of
from app.engine.memory_probe import probe_in_child
from tests.synthetic import write_synthetic_gguf
from tests.test_cli import tailorlm

pytest.importorskip("llama_cpp")

# Qwen3-MoE-shaped, 12 layers so that blk.10 and blk.11 can be mistaken for blk.1.
MOE_12: dict[str, Any] = {
    "model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 128,
    "num_hidden_layers": 12, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
}  # fmt: skip


@pytest.fixture(scope="module")
def moe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("moe") / "moe12-F16.gguf"
    write_synthetic_gguf(MOE_12, path)
    return path


@pytest.mark.parametrize("moe", [2, 12])
def test_llama_cpp_keeps_exactly_the_planned_experts_in_ram(moe_path: Path, moe: int) -> None:
    run = probe_in_child({"model": str(moe_path), "n_ctx": 512, "n_gpu_layers": 99, "moe_cpu_layers": moe,
                          "prompt_tokens": 64, "decode_tokens": 2})  # fmt: skip
    header = read_gguf_file(moe_path)
    s = RunSettings(n_ctx=512, n_gpu_layers=99, moe_cpu_layers=moe)
    devices = ["GPU0"] * 13  # as if every layer were offloaded: only the overrides say CPU
    planned = {
        t.name
        for t in header.tensors
        if (li := layer_of(t.name)) is not None and tensor_device(t.name, li, devices, s) == "CPU"
    }
    assert len(planned) == 3 * moe
    assert set(run["overridden_tensors"]) == planned
    assert set(run["overridden_tensors"].values()) <= {"CPU", "CPU_REPACK"}
    assert run["decode_tok_s"] > 0  # the prompt and the decode ran with the override in place
    assert layer_devices(12, s)[0] == "GPU0"  # the layer itself counts as offloaded


def test_chat_takes_the_expert_placement_and_refuses_it_for_a_dense_model(
    moe_path: Path, smollm2_path: Path
) -> None:
    answers = {}
    for moe in ("0", "all"):
        out = tailorlm("chat", str(moe_path), "--prompt", "Hello", "--json", "--max-tokens", "4", "--temperature", "0",
                       "--moe-cpu", moe, "--no-bandwidth")  # fmt: skip
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["plan"]["moe_cpu_layers"] == (0 if moe == "0" else 12)
        answers[moe] = data["text"]
    assert answers["0"] == answers["all"]  # the same computation, wherever the experts are kept
    out = tailorlm("chat", str(smollm2_path), "--prompt", "Hi", "--moe-cpu", "4", "--no-bandwidth")
    assert out.returncode != 0
    assert re.search(r"not a mixture-of-experts model", out.stderr)

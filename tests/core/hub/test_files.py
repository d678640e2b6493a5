"""GGUF file names from real Hub repos → quant types and split groups."""

from __future__ import annotations

import pytest

from app.core.hub.files import group_gguf_files, quant_from_name


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("gemma-3-270m-q4_k_m.gguf", "Q4_K_M"),
        ("Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("Q8_0/Model-Q8_0-00001-of-00003.gguf", "Q8_0"),
        ("phi-4-BF16.gguf", "BF16"),
        ("model-f16.gguf", "F16"),
        ("Mistral-Nemo-Instruct-2407-Q3_K_L.gguf", "Q3_K_L"),
        ("ggml-model.gguf", None),
    ],
)
def test_quant_from_name(name: str, quant: str | None) -> None:
    assert quant_from_name(name) == quant


def test_splits_are_one_model_and_incomplete_splits_are_dropped() -> None:
    files = [
        ("Q8_0/M-Q8_0-00001-of-00002.gguf", 100), ("Q8_0/M-Q8_0-00002-of-00002.gguf", 50),
        ("M-Q4_K_M.gguf", 80), ("mmproj-M-f16.gguf", 10), ("README.md", 1),
        ("F16/M-F16-00001-of-00003.gguf", 100), ("F16/M-F16-00003-of-00003.gguf", 100),
    ]  # fmt: skip
    got = group_gguf_files(files)
    assert [(g.quant, g.paths, g.size_bytes) for g in got] == [
        ("Q4_K_M", ("M-Q4_K_M.gguf",), 80),
        ("Q8_0", ("Q8_0/M-Q8_0-00001-of-00002.gguf", "Q8_0/M-Q8_0-00002-of-00002.gguf"), 150),
    ]

"""Synthetic GGUFs: the right tensors on disk, and llama.cpp loads, runs and quantizes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import pytest

from app.core.model.gguf_header import read_gguf_file
from app.core.model.hf_arch import header_from_hf_config
from tests.synthetic import quantize_gguf, synthetic_header, write_synthetic_gguf

llama_cpp = pytest.importorskip("llama_cpp")

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
    "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
}  # fmt: skip
TINY_GEMMA3: dict[str, Any] = {
    "model_type": "gemma3_text", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 1024,
    "max_position_embeddings": 2048, "sliding_window": 64,
}  # fmt: skip
# Fused qkv / gate-up tensors; also guards the general.name quirk (see tests/synthetic.py).
TINY_PHI3: dict[str, Any] = {
    "model_type": "phi3", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
    "original_max_position_embeddings": 2048, "sliding_window": None,
}  # fmt: skip
# Stacked 3-D expert tensors through load and quantization.
TINY_QWEN3_MOE: dict[str, Any] = {
    "model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 512, "moe_intermediate_size": 256,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
    "num_experts": 4, "num_experts_per_tok": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
}  # fmt: skip
# HuggingFaceTB/SmolLM2-135M-Instruct's real shapes (49k vocabulary), cut to 2 of its 30 layers.
SMOLLM2_135M: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rope_theta": 100000, "rms_norm_eps": 1e-05, "tie_word_embeddings": True,
}  # fmt: skip


def generate(path: Path, n_tokens: int = 4) -> list[int]:
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, verbose=False)
    try:
        prompt = llm.tokenize(b"Hello world, the cat sat")
        assert len(prompt) > 1
        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0):
            out.append(token)
            if len(out) == n_tokens:
                break
        return out
    finally:
        llm.close()


@pytest.mark.parametrize(
    "config",
    [TINY_LLAMA, TINY_GEMMA3, TINY_PHI3, TINY_QWEN3_MOE],
    ids=["llama", "gemma3", "phi3", "qwen3moe"],
)
def test_tiny_model_round_trip_load_generate_and_quantize(config: dict[str, Any], tmp_path: Path) -> None:
    path = write_synthetic_gguf(config, tmp_path / "tiny.gguf")
    expected = {t.name: (t.shape, t.type_name) for t in header_from_hf_config(config).tensors}

    ours = read_gguf_file(path)
    assert {t.name: (t.shape, t.type_name) for t in ours.tensors} == expected
    assert ours.metadata["general.architecture"] == header_from_hf_config(config).architecture
    reader = gguf.GGUFReader(str(path))
    assert {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors} == {
        k: v[0] for k, v in expected.items()
    }
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]

    assert len(generate(path)) == 4

    q4 = quantize_gguf(path, tmp_path / "tiny-Q4_K_M.gguf", "Q4_K_M")
    assert q4.stat().st_size < path.stat().st_size
    q_header = read_gguf_file(q4)
    assert q_header.metadata["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert any(t.type_name == "Q4_K" for t in q_header.tensors)
    assert len(generate(q4)) == 4


def test_real_shapes_truncated_to_a_few_layers(tmp_path: Path) -> None:
    path = write_synthetic_gguf(SMOLLM2_135M, tmp_path / "smol.gguf", n_layers=2, seed=3)
    header = read_gguf_file(path)
    assert header.metadata["llama.block_count"] == 2
    assert header.metadata["llama.vocab_size"] == 49152
    full = {t.name: t.shape for t in header_from_hf_config(SMOLLM2_135M).tensors}
    kept = {t.name: t.shape for t in header.tensors}
    assert kept == {
        k: v for k, v in full.items() if not k.startswith("blk.") or k.split(".")[1] in ("0", "1")
    }
    planned = synthetic_header(SMOLLM2_135M, n_layers=2)
    assert [(t.name, t.shape, t.type_name) for t in header.tensors] == [
        (t.name, t.shape, t.type_name) for t in planned.tensors
    ]  # written in the planned order
    assert len(generate(path)) == 4


def test_weights_are_random_and_norms_are_one(tmp_path: Path) -> None:
    path = write_synthetic_gguf(TINY_LLAMA, tmp_path / "w.gguf", dtype="F32")
    tensors = {t.name: t.data for t in gguf.GGUFReader(str(path)).tensors}
    q = tensors["blk.0.attn_q.weight"]
    assert abs(float(q.std()) - 0.02) < 0.002 and abs(float(q.mean())) < 0.002
    assert (tensors["blk.1.attn_norm.weight"] == 1.0).all()
    assert not (tensors["blk.0.attn_k.weight"][0] == tensors["blk.0.attn_v.weight"][0]).all()


def test_bf16_files_load(tmp_path: Path) -> None:
    path = write_synthetic_gguf(TINY_LLAMA, tmp_path / "bf16.gguf", dtype="BF16")
    assert read_gguf_file(path).metadata["general.file_type"] == 32
    assert len(generate(path)) == 4


def test_quantize_errors_are_clear_and_leave_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Q9_K"):
        quantize_gguf(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q9_K")
    dst = tmp_path / "out.gguf"
    with pytest.raises(RuntimeError, match="failed"):
        quantize_gguf(tmp_path / "missing.gguf", dst, "Q4_K_M")
    assert not dst.exists()


def test_unsupported_dtype_and_tiny_vocab_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        write_synthetic_gguf(TINY_LLAMA, tmp_path / "x.gguf", dtype="Q8_0")
    with pytest.raises(ValueError, match="260"):
        write_synthetic_gguf({**TINY_LLAMA, "vocab_size": 100}, tmp_path / "y.gguf")
    assert not (tmp_path / "y.gguf").exists()

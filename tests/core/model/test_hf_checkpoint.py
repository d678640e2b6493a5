"""The HF checkpoint rebuilt from SmolLM2's GGUF must look, to any HF tool, like the real upload.

The conversion tests trust this folder as a stand-in for a downloaded checkpoint, so its tokenizer
has to tokenize exactly as llama.cpp does with the original GGUF, and its weights must carry the
names, shapes and RoPE row order that transformers and llama.cpp's converter expect.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize

from tests.hf_checkpoint import (
    _to_bfloat16_bits,
    build_checkpoint,
    hf_tensor_name,
    llama_tokenize,
    unpermute_qk,
    write_reference_f16,
)

# building the checkpoint dequantizes 135M weights (~8 s on two cores)
pytestmark = pytest.mark.slow

# Text that exercises each pre-tokenizer rule: digit splitting, contractions, code indentation,
# accents and scripts outside Latin, multi-codepoint emoji, runs of whitespace, and chat markup.
TEXTS = [
    "Hello, world! How are you today?",
    "12345 and 3.14159 and 1,000,000",
    "def square(x):\n    return x**2  # comment\n",
    "naïve café — Zürich, Ελληνικά, Български, 日本語のテキスト",
    "emoji 🚀🦙😶\u200d🌫️ ✅",
    "  leading spaces\t\ttabs\n\n\nnewlines ",
    "I've been 'told he's there, 'RE you sure? We'Ve a'lL",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def checkpoint(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(smollm2_path, tmp_path_factory.mktemp("hf") / "smollm2")


@pytest.fixture(scope="module")
def original(smollm2_path: Path) -> gguf.GGUFReader:
    # parsing the 49k-token vocabulary takes seconds: read the file once per module
    return gguf.GGUFReader(smollm2_path)


@pytest.fixture(scope="module")
def gguf_meta(original: gguf.GGUFReader) -> dict[str, object]:
    return {k: f.contents() for k, f in original.fields.items()}


def _json(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())


def test_config_carries_the_gguf_hyperparameters(checkpoint: Path) -> None:
    config = _json(checkpoint / "config.json")
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["model_type"] == "llama"
    # SmolLM2-135M-Instruct's published config.json
    expected = {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000.0,
        "max_position_embeddings": 8192,
        "vocab_size": 49152,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    assert {k: config[k] for k in expected} == expected


def test_tokenizer_files_name_the_special_tokens(checkpoint: Path, gguf_meta: dict[str, object]) -> None:
    config = _json(checkpoint / "tokenizer_config.json")
    assert (config["bos_token"], config["eos_token"], config["unk_token"]) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert config["chat_template"] == gguf_meta["tokenizer.chat_template"]
    assert _json(checkpoint / "special_tokens_map.json")["eos_token"] == "<|im_end|>"
    assert _json(checkpoint / "generation_config.json")["eos_token_id"] == 2


def test_tokenizer_matches_llama_cpp_on_the_original(checkpoint: Path, smollm2_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    ours = [tokenizer.encode(text).ids for text in TEXTS]
    assert ours == llama_tokenize(smollm2_path, TEXTS)
    # one id per digit: the rule that makes llama.cpp's converter recognise the "smollm" pre-tokenizer
    assert len(tokenizer.encode("12345").ids) == 5


def test_tokenizer_vocabulary_is_the_gguf_one(checkpoint: Path, gguf_meta: dict[str, object]) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokens = gguf_meta["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    assert len(vocab) == len(tokens)
    assert all(vocab[tok] == i for i, tok in enumerate(tokens))
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    assert specials == set(tokens[:17])  # the 17 CONTROL tokens SmolLM2 starts its vocabulary with


def test_safetensors_have_hf_names_and_shapes(checkpoint: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), framework="numpy") as f:
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    per_layer = {
        "input_layernorm.weight": (576,),
        "post_attention_layernorm.weight": (576,),
        "self_attn.q_proj.weight": (576, 576),
        "self_attn.k_proj.weight": (192, 576),
        "self_attn.v_proj.weight": (192, 576),
        "self_attn.o_proj.weight": (576, 576),
        "mlp.gate_proj.weight": (1536, 576),
        "mlp.up_proj.weight": (1536, 576),
        "mlp.down_proj.weight": (576, 1536),
    }
    expected = {"model.embed_tokens.weight": (49152, 576), "model.norm.weight": (576,)}
    for layer in range(30):
        expected |= {f"model.layers.{layer}.{key}": shape for key, shape in per_layer.items()}
    assert shapes == expected  # tied embeddings: no lm_head.weight


def _converter_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    # LlamaModel.permute from llama.cpp's conversion/llama.py, transcribed to numpy
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def test_unpermute_inverts_the_converter_permute() -> None:
    weights = np.arange(192 * 4, dtype=np.float32).reshape(192, 4)
    for n_head in (3, 6):
        assert np.array_equal(_converter_permute(unpermute_qk(weights, n_head), n_head), weights)


@pytest.mark.parametrize(("gguf_name", "n_head"), [("blk.7.attn_q.weight", 9), ("blk.7.attn_k.weight", 3)])
def test_qk_rows_permute_back_to_the_gguf(
    checkpoint: Path, original: gguf.GGUFReader, gguf_name: str, n_head: int
) -> None:
    from safetensors import safe_open

    tensor = next(t for t in original.tensors if t.name == gguf_name)
    with safe_open(str(checkpoint / "model.safetensors"), framework="numpy") as f:
        hf = f.get_tensor(hf_tensor_name(gguf_name))
    assert np.array_equal(_converter_permute(hf, n_head), dequantize(tensor.data, tensor.tensor_type))


def test_bfloat16_rounds_to_nearest_even() -> None:
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, 1 + 2**-8 + 2**-12], dtype=np.float32)
    # 1+2^-8 and 1+3·2^-8 are ties: to 0x3F80 (even) and up to 0x3F82 (even); past the tie rounds up.
    assert _to_bfloat16_bits(values).tolist() == [0x3F80, 0x3F80, 0x3F82, 0xC020, 0x3F81]


def test_reference_f16_keeps_metadata_and_norms_in_f32(
    smollm2_path: Path, original: gguf.GGUFReader, tmp_path: Path
) -> None:
    reference = gguf.GGUFReader(write_reference_f16(smollm2_path, tmp_path / "ref-f16.gguf"))
    assert reference.fields["general.file_type"].contents() == 1  # MOSTLY_F16
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.pre", "llama.attention.layer_norm_rms_epsilon"):
        assert reference.fields[key].contents() == original.fields[key].contents()
    types = {t.name: t.tensor_type.name for t in reference.tensors}
    assert [t.name for t in reference.tensors] == [t.name for t in original.tensors]
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"
    assert types["token_embd.weight"] == types["blk.0.attn_q.weight"] == "F16"

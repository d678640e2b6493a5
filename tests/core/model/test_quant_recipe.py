"""llama.cpp's per-tensor type choices, reproduced for the real test models."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.model import quant_recipe
from app.core.model.gguf_header import read_gguf_file
from app.core.model.info import model_info_from_header


def _info(path: Path):
    return model_info_from_header(read_gguf_file(path), source=str(path), source_kind="gguf")


@pytest.mark.parametrize(("which", "ftype"), [("smollm2_path", "Q4_1"), ("gemma3_path", "Q4_K_M")])
def test_recipe_reproduces_real_files(which: str, ftype: str, request: pytest.FixtureRequest) -> None:
    model = _info(request.getfixturevalue(which))
    assert model.file_type == ftype
    predicted = quant_recipe.quantized_types(model, ftype)
    actual = {t.name: t.type_name for t in model.tensors}
    assert predicted == actual
    # ... and so the size of the tensor data, to the byte.
    header = read_gguf_file(request.getfixturevalue(which))
    assert quant_recipe.file_bytes(quant_recipe.quantized_tensors(model, ftype)) == (
        header.file_size_bytes - header.data_offset_bytes
    )


def test_smollm2_fallbacks(smollm2_path: Path) -> None:
    # SmolLM2's widths (576, 1536, 192) are not multiples of 256: K-quants fall back to 32-blocks.
    types = quant_recipe.quantized_types(_info(smollm2_path), "Q4_K_M")
    fell_back = [n for n, t in types.items() if t in ("Q5_0", "Q8_0") and n != "token_embd.weight"]
    assert len(fell_back) >= 150
    assert types["token_embd.weight"] == "Q8_0"  # tied output: Q6_K → 576 % 256 → Q8_0
    assert types["blk.0.ffn_down.weight"] == "Q6_K"  # 1536 % 256 == 0, use_more_bits(0)


def test_ladder_sizes(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    size = {q: quant_recipe.file_bytes(quant_recipe.quantized_tensors(model, q)) for q in quant_recipe.LADDER}
    ladder = [size[q] for q in quant_recipe.LADDER[1:]]
    assert ladder == sorted(ladder)
    assert size["F16"] > 2 * size["Q3_K_S"]
    # Gemma's 640-wide rows are not multiples of 256: Q2_K's tensors fall back to Q4_0 and its
    # attn_v/ffn_down bumps make the "smallest" type larger than Q3_K_S. llama.cpp really does
    # this; the advisor must not assume the ladder is monotonic.
    assert size["Q2_K"] > size["Q3_K_S"]


def test_unknown_ftype(gemma3_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown quantization"):
        quant_recipe.quantized_types(_info(gemma3_path), "Q9_X")


# --- against llama.cpp's own quantizer ---------------------------------------------------------
# Tiny models with the structure of real ones: 16 layers so use_more_bits() picks a real pattern,
# widths that are and are not multiples of 256, GQA ratios on both sides of 4, fused tensors
# (phi3), stacked experts (qwen3_moe), tied and untied embeddings.
RECIPE_MODELS = {
    "llama-gqa4": {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 16,
                   "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 2048,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "smollm-odd-widths": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                          "num_hidden_layers": 16, "num_attention_heads": 9, "num_key_value_heads": 3,
                          "vocab_size": 2048, "max_position_embeddings": 4096, "tie_word_embeddings": True},
    "gemma3": {"model_type": "gemma3_text", "hidden_size": 640, "intermediate_size": 2048, "num_hidden_layers": 12,
               "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 2048,
               "max_position_embeddings": 4096, "sliding_window": 512},
    "phi3": {"model_type": "phi3", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 8,
             "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 2048,
             "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "sliding_window": None},
    "qwen3moe": {"model_type": "qwen3_moe", "hidden_size": 512, "intermediate_size": 1024,
                 "moe_intermediate_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
                 "num_key_value_heads": 2, "head_dim": 64, "num_experts": 8, "num_experts_per_tok": 2,
                 "vocab_size": 2048, "max_position_embeddings": 4096},
}  # fmt: skip
FTYPES = [
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_0",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "IQ4_XS",
]


@pytest.fixture(scope="module")
def f16_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.synthetic import write_synthetic_gguf

    folder = tmp_path_factory.mktemp("recipe")
    # Hollow (the data a hole of zeros): the quantizer's choices and sizes depend on the header only.
    return {
        name: write_synthetic_gguf(cfg, folder / f"{name}-F16.gguf", sparse=True)
        for name, cfg in RECIPE_MODELS.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECIPE_MODELS))
def test_recipe_matches_llama_cpp_quantizer(name: str, f16_models: dict[str, Path], tmp_path: Path) -> None:
    from tests.synthetic import quantize_gguf

    source = _info(f16_models[name])
    for ftype in FTYPES:
        out = quantize_gguf(f16_models[name], tmp_path / f"{name}-{ftype}.gguf", ftype)
        real = read_gguf_file(out)
        actual = {t.name: t.type_name for t in real.tensors}
        predicted = quant_recipe.quantized_types(source, ftype)
        wrong = {n: (predicted[n], actual[n]) for n in actual if predicted[n] != actual[n]}
        assert not wrong, f"{name} {ftype}: (predicted, llama.cpp) {wrong}"
        assert quant_recipe.file_bytes(quant_recipe.quantized_tensors(source, ftype)) == (
            real.file_size_bytes - real.data_offset_bytes
        )
        out.unlink()


# --- the families added in issue 16, part 4 ----------------------------------------------------
# Tiny models with their structure (per-block widths, fused or 3-D attention tensors, scales and
# biases that are not weights, draft-head blocks), against llama.cpp's quantizer for a few mixes,
# MXFP4_MOE included (what gpt-oss ships in).
FAMILY_MODELS = {
    "gpt-oss": {"model_type": "gpt_oss", "hidden_size": 512, "intermediate_size": 512, "num_hidden_layers": 8,
                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "num_local_experts": 8,
                "num_experts_per_tok": 2, "vocab_size": 2048, "max_position_embeddings": 4096,
                "sliding_window": 128},
    "gemma4-ple": {"model_type": "gemma4_text", "hidden_size": 512, "intermediate_size": 1024,
                   "num_hidden_layers": 12, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 128,
                   "global_head_dim": 256, "hidden_size_per_layer_input": 64, "vocab_size": 2048,
                   "vocab_size_per_layer_input": 2048, "num_kv_shared_layers": 6, "use_double_wide_mlp": True,
                   "sliding_window": 512, "max_position_embeddings": 4096},
    "gemma4-moe": {"model_type": "gemma4_text", "hidden_size": 512, "intermediate_size": 768,
                   "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 4,
                   "num_global_key_value_heads": 2, "attention_k_eq_v": True, "head_dim": 128,
                   "global_head_dim": 256, "hidden_size_per_layer_input": 0, "enable_moe_block": True,
                   "num_experts": 8, "top_k_experts": 2, "moe_intermediate_size": 256, "vocab_size": 2048,
                   "sliding_window": 512, "max_position_embeddings": 4096},
    "glm4moe": {"model_type": "glm4_moe", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 8,
                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "attention_bias": True,
                "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 256,
                "n_shared_experts": 1, "first_k_dense_replace": 1, "num_nextn_predict_layers": 1,
                "vocab_size": 2048, "max_position_embeddings": 4096},
    "glm47-mla": {"model_type": "glm4_moe_lite", "hidden_size": 512, "intermediate_size": 1024,
                  "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8, "q_lora_rank": 256,
                  "kv_lora_rank": 128, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
                  "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 256,
                  "n_shared_experts": 1, "first_k_dense_replace": 1, "num_nextn_predict_layers": 1,
                  "vocab_size": 2048, "max_position_embeddings": 4096},
    "lfm2moe": {"model_type": "lfm2_moe", "hidden_size": 512, "intermediate_size": 1024,
                "moe_intermediate_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
                "num_key_value_heads": 2, "num_dense_layers": 2, "num_experts": 8, "num_experts_per_tok": 2,
                "vocab_size": 2048, "max_position_embeddings": 4096,
                "layer_types": ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv",
                                "full_attention"]},
    "mistral3": {"model_type": "mistral3", "text_config": {
        "model_type": "mistral", "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8,
        "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 2048,
        "max_position_embeddings": 4096}},
}  # fmt: skip
FAMILY_FTYPES = ["Q4_K_M", "MXFP4_MOE"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILY_MODELS))
def test_recipe_matches_llama_cpp_quantizer_for_new_families(name: str, tmp_path: Path) -> None:
    from tests.synthetic import quantize_gguf, write_synthetic_gguf

    f16 = write_synthetic_gguf(FAMILY_MODELS[name], tmp_path / f"{name}-F16.gguf", sparse=True)
    source = _info(f16)
    for ftype in FAMILY_FTYPES:
        real = read_gguf_file(quantize_gguf(f16, tmp_path / f"{name}-{ftype}.gguf", ftype))
        actual = {t.name: t.type_name for t in real.tensors}
        predicted = quant_recipe.quantized_types(source, ftype)
        wrong = {n: (predicted[n], actual[n]) for n in actual if predicted[n] != actual[n]}
        assert not wrong, f"{name} {ftype}: (predicted, llama.cpp) {wrong}"
        assert quant_recipe.file_bytes(quant_recipe.quantized_tensors(source, ftype)) == (
            real.file_size_bytes - real.data_offset_bytes
        )


def test_mxfp4_moe_puts_stacked_experts_in_mxfp4_and_the_rest_in_q8_0() -> None:
    from app.core.model.hf_arch import header_from_hf_config

    model = model_info_from_header(
        header_from_hf_config(FAMILY_MODELS["gpt-oss"]), source="gpt-oss", source_kind="hf_dir"
    )
    types = quant_recipe.quantized_types(model, "MXFP4_MOE")
    assert types["blk.0.ffn_down_exps.weight"] == "MXFP4" and types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["output.weight"] == types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_sinks.weight"] == types["blk.0.ffn_gate_inp.weight"] == "F32"
    assert types["blk.0.ffn_gate_exps.bias"] == "F32"  # not a weight: never quantized
    assert "MXFP4_MOE" not in quant_recipe.LADDER  # offered by nobody yet: no quality data for it


def test_n_dims_ignores_trailing_ones_like_ggml() -> None:
    assert quant_recipe.n_dims((2048, 1)) == 1  # Qwen3.5's shared-expert gate: a vector to ggml
    assert quant_recipe.n_dims((2048, 8, 1)) == 2
    assert quant_recipe.n_dims((1,)) == quant_recipe.n_dims(()) == 1
    assert quant_recipe.n_dims((64, 1, 4)) == 3


def test_mxfp4_is_32_values_in_17_bytes() -> None:
    from app.core.model import ggml_types

    # ggml-common.h block_mxfp4: one E8M0 scale byte and 16 bytes of 4-bit values (ggml.c type_traits)
    assert ggml_types.type_name(39) == "MXFP4"
    assert (ggml_types.block_size("MXFP4"), ggml_types.block_bytes("MXFP4")) == (32, 17)
    assert ggml_types.tensor_bytes("MXFP4", (2880, 2880, 32)) == 2880 // 32 * 17 * 2880 * 32


# --- every file type, overrides, the header -----------------------------------------------------
# (each against llama.cpp's quantizer: tests/core/model/test_quant_recipe_imatrix.py)


def _from_config(config: dict[str, object]):
    from app.core.model.hf_arch import header_from_hf_config

    return model_info_from_header(header_from_hf_config(config), source="config", source_kind="hf_dir")


def test_all_ftypes_are_what_llama_quantize_offers() -> None:
    import llama_cpp

    offered = {
        n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_")
    }
    # NVFP4 has an enum value but no default type (llama_ftype_get_default_type) nor a QUANT_OPTIONS row
    assert set(quant_recipe.ALL_FTYPES) == (offered - {"NVFP4"}) | {"F32"}
    assert len(quant_recipe.ALL_FTYPES) == len(set(quant_recipe.ALL_FTYPES))
    assert quant_recipe.IMATRIX_FTYPES.issubset(quant_recipe.ALL_FTYPES)
    assert set(quant_recipe.LADDER) <= set(quant_recipe.ALL_FTYPES)


def test_types_newer_than_the_gguf_package_are_sized_as_ggml_sizes_them() -> None:
    """Q2_0 (ggml type 42) is not in the gguf package yet: TailorLM's own entry must be ggml's."""
    from app.core.model import ggml_types
    from app.engine.ggml_quant import ggml_type

    for type_id, (name, block, nbytes) in ggml_types.NEWER_TYPES.items():
        traits = ggml_type(name)
        assert (traits.type_id, traits.block_size, traits.block_bytes) == (type_id, block, nbytes)
        assert (
            ggml_types.type_name(type_id) == name
            and ggml_types.row_bytes(name, 4096) == 4096 // block * nbytes
        )


def test_bad_overrides_are_refused(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    with pytest.raises(ValueError, match="unknown ggml type"):
        quant_recipe.quantized_types(model, "Q4_K_M", overrides=[("attn_v", "Q9_0")])
    with pytest.raises(ValueError, match="bad tensor pattern"):
        quant_recipe.quantized_types(model, "Q4_K_M", overrides=[("attn_(v", "Q8_0")])
    with pytest.raises(ValueError, match="output tensor"):
        quant_recipe.quantized_types(model, "Q4_K_M", output_type="Q9")


def test_overrides_first_match_wins_and_skips_the_mix(gemma3_path: Path) -> None:
    model = _info(gemma3_path)
    plain = quant_recipe.quantized_types(model, "Q4_K_M")
    types = quant_recipe.quantized_types(
        model, "Q4_K_M", overrides=[(r"blk\.0\.", "Q8_0"), ("ffn_down", "q4_0")]
    )
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # the first pattern that matches
    assert types["blk.1.ffn_down.weight"] == "Q4_0"  # not the mix's Q6_K (use_more_bits(1, 18))
    assert plain["blk.1.ffn_down.weight"] == "Q6_K"
    assert types["blk.1.attn_norm.weight"] == "F32"  # never quantized, whatever the patterns
    # A tensor a pattern names skips the mix and its counter: blk.2's attn_v is the mix's second.
    assert types["blk.2.attn_v.weight"] == plain["blk.1.attn_v.weight"] != plain["blk.2.attn_v.weight"]


def test_70b_is_what_llama_cpp_calls_70b() -> None:
    base = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 80,
            "num_attention_heads": 8, "num_key_value_heads": 1, "vocab_size": 512}  # fmt: skip
    bumped = quant_recipe.quantized_types(_from_config(base), "Q3_K_S")["blk.5.attn_v.weight"]
    assert bumped == "Q5_K"  # Q3_K: 8 heads share attn_v
    mha = {**base, "num_key_value_heads": 8}  # 80 blocks without GQA: LLaMA-65B
    assert quant_recipe.quantized_types(_from_config(mha), "Q3_K_S")["blk.5.attn_v.weight"] == "Q3_K"
    qwen2 = {**base, "model_type": "qwen2"}
    assert quant_recipe.quantized_types(_from_config(qwen2), "Q3_K_S")["blk.5.attn_v.weight"] == "Q5_K"


def test_q1_0_without_a_fallback_fails_like_llama_cpp(smollm2_path: Path) -> None:
    from app.core.errors import ConversionError

    # 576-wide rows are not whole 128-blocks and llama.cpp defines no smaller type for Q1_0.
    with pytest.raises(ConversionError, match=r"blk\.0\.attn_k\.weight"):
        quant_recipe.quantized_types(_info(smollm2_path), "Q1_0")


def test_imatrix_keys_are_cut_as_llama_cpp_cuts_them() -> None:
    from app.core.model.imatrix_file import ImatrixKV

    sizes = quant_recipe.imatrix_kv_bytes(ImatrixKV(file="x" * 300, dataset=None, entries=5, chunks=0))
    assert set(sizes) == {"quantize.imatrix.file", "quantize.imatrix.entries_count"}
    assert sizes["quantize.imatrix.file"] == 8 + len("quantize.imatrix.file") + 4 + 8 + 127
    assert sizes["quantize.imatrix.entries_count"] == 8 + len("quantize.imatrix.entries_count") + 4 + 4
    full = quant_recipe.imatrix_kv_bytes(ImatrixKV(file="a", dataset="", entries=5, chunks=3))
    assert len(full) == 4  # an empty dataset name is still written


@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_header_bytes_add_up_to_the_real_header(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    header = read_gguf_file(path)
    kv = quant_recipe.gguf_kv_bytes(path)
    assert len(kv) == len(header.metadata)
    # Both files already carry file type and quantization version as u32: the same header again.
    assert quant_recipe.quantized_header_bytes(kv, header.tensors) == header.data_offset_bytes

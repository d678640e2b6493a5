"""llama.cpp's per-tensor type choices, reproduced for the real test models."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import quant_recipe
from app.core.gguf_header import read_gguf_file
from app.core.model_info import model_info_from_header


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

"""Every llama-quantize file type, with and without an importance matrix, with tensor-type overrides,
against llama.cpp's own quantizer (``llama_model_quantize``): the type of every tensor, the refusal
to run without a matrix, and the output's size to the byte, imatrix metadata included.

The sources are hollow: a real model's exact header (metadata, vocabulary, tensor table) with the
data section a hole of zeros, and synthetic models written the same way. Zero bytes are valid data
for every ggml type, and what llama.cpp decides and writes per tensor depends on the header only,
so the quantizer's choices and sizes are those of the real weights — at a fraction of the time
(IQ2_XS of SmolLM2's real weights: 42 s on 2 cores; of the hollow copy: 2 s).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.build.convert import predicted_bytes
from app.core.errors import ConversionError
from app.core.model import quant_recipe
from app.core.model.gguf_header import read_gguf_file
from app.core.model.imatrix_file import ImatrixKV
from app.core.model.source import model_from_gguf

# Tiny models with the structure the mixes look at, widths multiples of 256 so the IQ types are not
# all replaced by IQ4_NL: GQA on both sides of 4, tied and untied embeddings, fused attn_qkv (phi3),
# 8 stacked experts (qwen3moe: n_expert == 8 rules and 3-D tensors), shared experts after a dense
# block and a draft head (glm4moe: ffn_down counted per tensor, not per layer), a 70B (80 blocks, GQA).
MODELS: dict[str, dict[str, Any]] = {
    "llama-gqa4": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 16,
                   "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 512,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False},
    "llama-mha-tied": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 8,
                       "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
                       "max_position_embeddings": 4096, "tie_word_embeddings": True},
    "phi3": {"model_type": "phi3", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 8,
             "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512,
             "max_position_embeddings": 4096, "original_max_position_embeddings": 4096, "sliding_window": None},
    "qwen3moe": {"model_type": "qwen3_moe", "hidden_size": 256, "intermediate_size": 512,
                 "moe_intermediate_size": 256, "num_hidden_layers": 8, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 64, "num_experts": 8, "num_experts_per_tok": 2,
                 "vocab_size": 512, "max_position_embeddings": 4096},
    "glm4moe": {"model_type": "glm4_moe", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 16,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "attention_bias": True,
                "n_routed_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 256,
                "n_shared_experts": 1, "first_k_dense_replace": 1, "num_nextn_predict_layers": 1,
                "vocab_size": 512, "max_position_embeddings": 4096},
    "llama-70b": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 80,
                  "num_attention_heads": 8, "num_key_value_heads": 1, "vocab_size": 512,
                  "max_position_embeddings": 4096, "tie_word_embeddings": False},
}  # fmt: skip
# The file types llama.cpp quantizes to (F16/BF16/F32 copy the rows, nothing to choose). IQ1_S,
# IQ2_XS and IQ2_M cost seconds even on zeros: each runs on one model (their rules are IQ1_M's,
# IQ2_XXS's and IQ2_S's, which run on all). The 70B gets the types whose attn_v it can bump, the
# shared-expert MoE those whose ffn_down rules count tensors, not layers.
QUANTIZED = [f for f in quant_recipe.ALL_FTYPES if f not in ("F16", "BF16", "F32")]
SWEEP = {name: [f for f in QUANTIZED if f not in ("IQ1_S", "IQ2_XS", "IQ2_M")] for name in MODELS}
SWEEP["llama-gqa4"].append("IQ2_M")
SWEEP["llama-mha-tied"].append("IQ2_XS")
SWEEP["qwen3moe"].append("IQ1_S")
SWEEP["llama-70b"] = ["Q2_K", "Q2_K_S", "IQ3_XS", "Q3_K_S", "Q3_K_M", "IQ3_M", "Q4_K_S", "Q4_K_M", "IQ4_XS"]
SWEEP["glm4moe"] = ["IQ1_M", "IQ2_XXS", "IQ2_S", "Q2_K_S", "IQ3_XXS", "IQ3_M", "Q4_K_M", "MXFP4_MOE"]
OVERRIDES: dict[str, list[tuple[str, str]]] = {
    "none": [],
    "keep-q8": [("attn_v", "Q8_0"), ("output", "Q8_0"), ("token_embd", "Q8_0")],
    # the first block named: the mix's counters skip it, so every later choice shifts by a layer
    "first-block": [(r"^blk\.0\.", "Q8_0")],
    # first match wins; F16 and a type that needs an imatrix in a file type that does not
    "mixed": [(r"blk\.[0-2]\.ffn_down", "F16"), ("ffn_down", "Q6_K"), ("ffn_(gate|up)", "q4_k"),
              (r"attn_q\.", "IQ2_XS")],
}  # fmt: skip


def hollow_copy(src: Path, dst: Path) -> Path:
    """``src``'s header, then a hole as long as its tensor data."""
    header = read_gguf_file(src)
    with src.open("rb") as f, dst.open("wb") as out:
        out.write(f.read(header.data_offset_bytes))
        out.truncate(header.file_size_bytes)
    return dst


def quantize(
    src: Path,
    dst: Path,
    ftype: str,
    *,
    imatrix: bool,
    overrides: Sequence[tuple[str, str]] = (),
    kv: ImatrixKV | None = None,
    output_type: str | None = None,
    token_embedding_type: str | None = None,
) -> int:
    """llama_model_quantize as llama-quantize calls it: an all-ones matrix for every 2-D/3-D
    weight (ne0 × n_expert values), the imatrix keys as kv overrides, the patterns as tt_overrides
    (each array closed by an empty entry). Returns its exit code; ``dst`` exists when it is 0."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True  # the real test models are Q4_1 and Q4_K_M
    if output_type is not None:
        params.output_tensor_type = getattr(llama_cpp, f"GGML_TYPE_{output_type}")
    if token_embedding_type is not None:
        params.token_embedding_type = getattr(llama_cpp, f"GGML_TYPE_{token_embedding_type}")
    alive: list[Any] = []
    if imatrix:
        weights = [t for t in read_gguf_file(src).tensors if quant_recipe.n_dims(t.shape) >= 2]
        arr = (llama_cpp.llama_model_imatrix_data * (len(weights) + 1))()
        for entry, t in zip(arr, weights, strict=False):
            values = np.ones(t.shape[0] * (t.shape[2] if len(t.shape) > 2 else 1), np.float32)
            entry.name, entry.size = t.name.encode(), values.size
            entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            alive.append(values)
        params.imatrix = arr
        alive.append(arr)
    if kv is not None:
        str_, int_ = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
        items = [("quantize.imatrix.file", str_, kv.file)]
        if kv.dataset is not None:
            items.append(("quantize.imatrix.dataset", str_, kv.dataset))
        items.append(("quantize.imatrix.entries_count", int_, kv.entries))
        if kv.chunks > 0:
            items.append(("quantize.imatrix.chunks_count", int_, kv.chunks))
        kvo = (llama_cpp.llama_model_kv_override * (len(items) + 1))()
        for o, (key, tag, value) in zip(kvo, items, strict=False):
            o.key, o.tag = key.encode(), tag
            if tag == str_:
                o.value.val_str = str(value).encode()[:127]  # quantize.cpp: strncpy(…, 127)
            else:
                o.value.val_i64 = int(value)
        params.kv_overrides = kvo
        alive.append(kvo)
    if overrides:
        tt = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for o, (pattern, type_name) in zip(tt, overrides, strict=False):
            o.pattern, o.type = pattern.encode(), getattr(llama_cpp, f"GGML_TYPE_{type_name.upper()}")
        tt[len(overrides)].pattern, tt[len(overrides)].type = None, llama_cpp.GGML_TYPE_COUNT
        params.tt_overrides = tt
        alive.append(tt)
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))


def check_against_llama_cpp(src: Path, out: Path, ftype: str, **options: Any) -> list[str]:
    """Quantize ``src`` without and with an importance matrix (``options``: overrides, output_type,
    token_embedding_type) and compare with the port; returns the failures (empty: all agreed)."""
    model = model_from_gguf(src)
    kv_bytes = quant_recipe.gguf_kv_bytes(src)
    failures = []
    try:
        needing = quant_recipe.requires_imatrix(model, ftype, **options)
    except ConversionError:  # llama.cpp has no fallback for this type and these widths: it fails too
        return [] if quantize(src, out, ftype, imatrix=True, **options) != 0 else [f"{ftype}: no error"]
    for imatrix in (False, True):
        out.unlink(missing_ok=True)
        rc = quantize(src, out, ftype, imatrix=imatrix, **options)
        if not imatrix and bool(needing) != (rc != 0):
            failures.append(f"{ftype}: requires_imatrix {needing[:3]} but llama.cpp returned {rc}")
        if rc != 0:
            continue
        real = read_gguf_file(out)
        tensors = quant_recipe.quantized_tensors(model, ftype, imatrix=imatrix, **options)
        predicted = {t.name: t.type_name for t in tensors}
        wrong = {
            t.name: (predicted[t.name], t.type_name) for t in real.tensors if predicted[t.name] != t.type_name
        }
        if wrong:
            failures.append(
                f"{ftype} imatrix={imatrix}: (predicted, llama.cpp) {dict(list(wrong.items())[:6])}"
            )
        # No imatrix keys here (no kv overrides): the header is the source's, re-typed.
        size = quant_recipe.file_bytes(tensors) + quant_recipe.quantized_header_bytes(kv_bytes, tensors)
        if size != real.file_size_bytes:
            failures.append(
                f"{ftype} imatrix={imatrix}: predicted {size:,} bytes, llama.cpp wrote {real.file_size_bytes:,}"
            )
        if not imatrix and not options and predicted_bytes(model, ftype) != real.file_size_bytes:
            failures.append(f"{ftype}: predicted_bytes is not the file's size")
    return failures


@pytest.fixture(scope="module")
def hollow_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests import models
    from tests.synthetic import write_synthetic_gguf

    folder = tmp_path_factory.mktemp("hollow")
    paths = {
        name: write_synthetic_gguf(cfg, folder / f"{name}.gguf", sparse=True) for name, cfg in MODELS.items()
    }
    paths["smollm2"] = hollow_copy(models.smollm2_path(), folder / "smollm2.gguf")
    paths["gemma3"] = hollow_copy(models.gemma3_path(), folder / "gemma3.gguf")
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MODELS))
def test_every_file_type_matches_llama_cpp(name: str, hollow_models: dict[str, Path], tmp_path: Path) -> None:
    failures = [
        f
        for ftype in SWEEP[name]
        for f in check_against_llama_cpp(hollow_models[name], tmp_path / "q.gguf", ftype)
    ]
    assert not failures, "\n".join(failures)


# SmolLM2 (576/1536/192-wide rows: most IQ tensors fall back to IQ4_NL, Q1_0 is impossible) and
# Gemma 3 (640-wide rows, 262k-token tied embedding), requantized from their Q4_1/Q4_K_M files.
REAL_FTYPES = ["IQ1_S", "IQ2_XS", "Q2_K_S", "IQ3_XXS", "IQ3_M", "IQ4_XS", "Q3_K_M", "Q1_0", "Q2_0"]


@pytest.mark.parametrize("ftype", REAL_FTYPES)
@pytest.mark.parametrize("name", ["smollm2", "gemma3"])
def test_real_models_match_llama_cpp(
    name: str, ftype: str, hollow_models: dict[str, Path], tmp_path: Path
) -> None:
    if (name, ftype) == ("smollm2", "IQ1_S"):
        pytest.skip("IQ1_S of SmolLM2 takes 10 s even hollow; Gemma 3 covers it")
    failures = check_against_llama_cpp(hollow_models[name], tmp_path / "q.gguf", ftype)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overrides", list(OVERRIDES.values())[1:], ids=list(OVERRIDES)[1:])
@pytest.mark.parametrize(("name", "ftype"), [("smollm2", "Q4_K_M"), ("gemma3", "IQ2_XS"), ("llama-gqa4", "IQ3_M"),
                                             ("qwen3moe", "Q2_K_S"), ("llama-mha-tied", "IQ4_XS")])  # fmt: skip
def test_overrides_match_llama_cpp(
    name: str, ftype: str, overrides: list[tuple[str, str]], hollow_models: dict[str, Path], tmp_path: Path
) -> None:
    failures = check_against_llama_cpp(hollow_models[name], tmp_path / "q.gguf", ftype, overrides=overrides)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("name", "ftype", "output_type", "embd_type"), [
    ("smollm2", "IQ4_XS", "Q4_0", None),  # tied: token_embd takes the output type (and its fallback)
    ("llama-gqa4", "Q3_K_M", "IQ4_NL", "Q3_K"),  # as given, no mix, no fallback
    ("llama-mha-tied", "IQ2_XS", None, "Q5_K"),
])  # fmt: skip
def test_output_and_token_embedding_types_match_llama_cpp(
    name: str,
    ftype: str,
    output_type: str | None,
    embd_type: str | None,
    hollow_models: dict[str, Path],
    tmp_path: Path,
) -> None:
    options = {"output_type": output_type, "token_embedding_type": embd_type}
    failures = check_against_llama_cpp(hollow_models[name], tmp_path / "q.gguf", ftype, **options)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("name", "ftype", "keep"), [
    ("smollm2", "Q4_K_M", "mixed"), ("gemma3", "IQ2_XS", "none"), ("qwen3moe", "IQ3_XXS", "keep-q8"),
])  # fmt: skip
def test_predicted_bytes_with_an_imatrix_is_the_file_size(
    name: str, ftype: str, keep: str, hollow_models: dict[str, Path], tmp_path: Path
) -> None:
    overrides = OVERRIDES[keep]
    # A path longer than the 127 bytes llama.cpp keeps, cut inside a two-byte character.
    kv = ImatrixKV(file="imatrix-" + "é" * 70 + ".gguf", dataset="wiki.train.raw", entries=211, chunks=100)
    src, out = hollow_models[name], tmp_path / "q.gguf"
    assert quantize(src, out, ftype, imatrix=True, overrides=overrides, kv=kv) == 0
    real = read_gguf_file(out)
    assert real.metadata["quantize.imatrix.entries_count"] == 211
    assert predicted_bytes(model_from_gguf(src), ftype, imatrix=kv, overrides=overrides) == out.stat().st_size
    # No dataset, no chunk count (a legacy matrix): those keys are left out.
    bare = ImatrixKV(file="m.dat", dataset=None, entries=7, chunks=0)
    out.unlink()
    assert quantize(src, out, ftype, imatrix=True, overrides=overrides, kv=bare) == 0
    assert "quantize.imatrix.dataset" not in read_gguf_file(out).metadata
    assert (
        predicted_bytes(model_from_gguf(src), ftype, imatrix=bare, overrides=overrides) == out.stat().st_size
    )


def test_imatrix_ftypes_are_those_llama_cpp_refuses_without_one(hollow_models: dict[str, Path]) -> None:
    # A model whose rows are multiples of 256: every refusal comes from the file type itself.
    model = model_from_gguf(hollow_models["llama-gqa4"])
    needing = {f for f in quant_recipe.ALL_FTYPES if quant_recipe.requires_imatrix(model, f)}
    assert needing == quant_recipe.IMATRIX_FTYPES
    # IQ3_XS: its attn_q/attn_k are IQ3_XXS; IQ3_S/IQ3_M keep IQ3_S, which needs none.
    assert quant_recipe.requires_imatrix(model, "IQ3_XS")[:2] == [
        "blk.0.attn_k.weight",
        "blk.0.attn_q.weight",
    ]
    # ... and an override can make any file type need one.
    assert quant_recipe.requires_imatrix(model, "Q4_K_M", [("attn_q", "IQ2_XS")])[0] == "blk.0.attn_q.weight"

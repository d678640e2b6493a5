"""Hyper-parameters no model can have are refused with one error naming the key (issue 13).

Every file here is a header llama.cpp's own parser accepts (the referee says so): the refusal is
TailorLM's sanity layer (app/core/model/sanity.py, used by info.py), which keeps a damaged value
from sizing a tuple per layer or getting a plan.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from app.core.errors import CorruptModelError
from app.core.model import sanity
from app.core.model.gguf_header import ArrayLength
from app.core.model.source import model_from_gguf
from tests.gguf_doc import (
    ARRAY,
    BOOL,
    F32,
    I32,
    KV,
    STRING,
    U32,
    U64,
    Doc,
    Row,
    cut_vocabulary,
    read_doc,
    relayout,
    tiny_doc,
    value,
    write_doc,
)
from tests.gguf_referee import Verdict, referee


@pytest.fixture(scope="module")
def smol(smollm2_path: Path) -> Doc:
    return cut_vocabulary(read_doc(smollm2_path), 128)


def _with(doc: Doc, key: str, vtype: int, raw: bytes) -> Doc:
    doc = doc.clone()
    kv = doc.find(key)
    if kv is None:
        doc.kvs.append(KV(key.encode(), vtype, raw))
    else:
        kv.vtype, kv.value = vtype, raw
    return doc


def _refused(doc: Doc, path: Path, match: str) -> None:
    write_doc(doc, path)
    start = time.perf_counter()
    with pytest.raises(CorruptModelError, match=match):
        model_from_gguf(path)
    assert time.perf_counter() - start < 5
    assert referee([path]) == [Verdict(True)]  # llama.cpp's header parser has nothing against it


@pytest.mark.parametrize(
    ("key", "vtype", "v", "match"),
    [
        ("llama.block_count", U32, (1 << 32) - 1, r"llama.block_count is 4,294,967,295, which no model has"),
        ("llama.block_count", U32, 1_000_000, r"llama.block_count is 1,000,000"),
        ("llama.block_count", U32, 0, r"llama.block_count is 0"),
        ("llama.block_count", F32, math.nan, r"llama.block_count is nan, not a whole number"),
        ("llama.embedding_length", U64, 1 << 63, r"llama.embedding_length is 9,223,372,036,854,775,808"),
        ("llama.embedding_length", STRING, "576", r"llama.embedding_length is '576', not a whole number"),
        ("llama.embedding_length", BOOL, True, r"llama.embedding_length is True, not a whole number"),
        ("llama.embedding_length", U32, 640, r"embedding_length is 640, but its token embedding is 576 wide"),
        ("llama.attention.head_count", U32, 0, r"head_count is 0 in every layer, yet it has attention"),
        ("llama.attention.head_count_kv", I32, -1, r"head_count_kv is -1"),
        ("llama.attention.head_count_kv", U32, 4, r"head_count_kv is 4 in layer 0, which does not divide its 9"),
        ("llama.context_length", U64, 1 << 40, r"llama.context_length is 1,099,511,627,776"),
        ("llama.context_length", F32, math.inf, r"llama.context_length is inf, not a whole number"),
        ("llama.attention.key_length", U32, 0, r"key_length leaves the attention heads 0 wide"),
        ("llama.vocab_size", U32, 0, r"llama.vocab_size is 0"),
        ("tokenizer.ggml.tokens", ARRAY, [""] * 129, r"vocabulary has 129 tokens, but its token embedding has 128 rows"),
        ("split.count", F32, math.nan, r"split.count is nan, not a whole number"),
        ("general.architecture", U32, 7, r"general.architecture is not a name"),
    ],
)  # fmt: skip
def test_impossible_values_are_refused(
    smol: Doc, tmp_path: Path, key: str, vtype: int, v: object, match: str
) -> None:
    _refused(_with(smol, key, vtype, value(vtype, v, STRING)), tmp_path / "bad.gguf", match)


@pytest.mark.parametrize(
    ("items", "item", "match"),
    [
        ([9] * 29, U32, "lists 29 layers but the model has 30"),
        ([math.nan] * 30, F32, "is nan, not a whole number"),
        (["9"] * 30, STRING, "is '9', not a whole number"),
    ],
)
def test_per_layer_arrays_must_have_one_whole_number_per_layer(
    smol: Doc, tmp_path: Path, items: list[object], item: int, match: str
) -> None:
    doc = _with(smol, "llama.attention.head_count", ARRAY, value(ARRAY, items, item))
    _refused(doc, tmp_path / "layers.gguf", match)


def test_tensors_must_fit_the_layer_count(smol: Doc, tmp_path: Path) -> None:
    doc = _with(smol, "llama.block_count", U32, value(U32, 29))  # the file has blk.0 … blk.29
    _refused(doc, tmp_path / "layers.gguf", r"block_count is 29, but it has a tensor 'blk.29\.")


def test_an_empty_tensor_or_tensor_table_is_refused(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.rows[3].dims[1] = 0
    relayout(doc)
    _refused(doc, tmp_path / "empty.gguf", r"has the empty shape \[576, 0\]")
    doc.rows = []
    relayout(doc)
    _refused(doc, tmp_path / "none.gguf", "tensor table is empty")


def test_experts_need_a_count_in_use(tmp_path: Path) -> None:
    moe = tiny_doc(moe=True)
    assert model_from_gguf(write_doc(moe, tmp_path / "moe.gguf")).n_expert_used == 2
    _refused(
        _with(moe, "llama.expert_used_count", U32, value(U32, 0)),
        tmp_path / "used0.gguf",
        "is 0 with 4 experts",
    )
    _refused(
        _with(moe, "llama.expert_used_count", U32, value(U32, 5)), tmp_path / "used5.gguf", "expected 0 to 4"
    )
    _refused(
        _with(moe, "llama.expert_count", U32, value(U32, 5000)), tmp_path / "e.gguf", "expected 0 to 1,024"
    )


def test_real_models_pass_unchanged(smollm2_path: Path, gemma3_path: Path, tmp_path: Path) -> None:
    smol, gemma = model_from_gguf(smollm2_path), model_from_gguf(gemma3_path)
    assert (smol.n_layer, smol.n_embd, smol.n_head[0], smol.n_head_kv[0], smol.n_vocab) == (
        30,
        576,
        9,
        3,
        49152,
    )
    assert (gemma.n_layer, gemma.n_embd, gemma.head_dim_k, gemma.n_vocab) == (18, 640, 256, 262144)
    # the cut copy keeps every hyper-parameter but the vocabulary
    cut = model_from_gguf(write_doc(cut_vocabulary(read_doc(smollm2_path), 128), tmp_path / "cut.gguf"))
    assert (cut.n_layer, cut.n_embd, cut.n_head, cut.n_vocab) == (30, 576, smol.n_head, 128)


def test_whole_accepts_only_ints_in_range() -> None:
    assert sanity.whole(7, "k", 0, 10) == 7
    for bad in (True, 7.0, "7", [7], None, ArrayLength("UINT32", 9000), -1, 11):
        with pytest.raises(CorruptModelError, match="The model's k is"):
            sanity.whole(bad, "k", 0, 10)
    assert sanity.per_layer(3, 4, "k", 0, 10) == (3, 3, 3, 3)
    assert sanity.per_layer([1, 2], 2, "k", 0, 10) == (1, 2)
    with pytest.raises(CorruptModelError, match="too long to be one per layer"):
        sanity.per_layer(ArrayLength("UINT32", 9000), 4, "k", 0, 10)


def test_a_header_with_many_layers_of_tensors_is_bounded(smol: Doc, tmp_path: Path) -> None:
    """512 layers (llama.cpp's LLAMA_MAX_LAYERS) are a model; 513 are refused before any per-layer work."""
    doc = _with(smol, "llama.block_count", U32, value(U32, 513))
    doc.rows.append(Row(b"blk.512.attn_norm.weight", [576], 0, 0))
    relayout(doc)
    _refused(doc, tmp_path / "513.gguf", "expected 1 to 512")

"""Tensors in the order people expect, on the real SmolLM2 header (whose own order is blk.0, blk.1,
blk.10, …): every block's tensors together, blocks counted up, nothing lost."""

from __future__ import annotations

import re
from pathlib import Path

from app.core.model.gguf_header import read_gguf_file
from app.core.model.tensor_order import natural_key, natural_sorted


def test_numbers_compare_as_numbers() -> None:
    names = ["blk.10.attn_q.weight", "blk.2.attn_q.weight", "blk.1.attn_q.weight", "blk.0.attn_q.weight"]
    assert natural_sorted(names) == [
        "blk.0.attn_q.weight", "blk.1.attn_q.weight", "blk.2.attn_q.weight", "blk.10.attn_q.weight"
    ]  # fmt: skip
    assert natural_key("Blk.9") < natural_key("blk.10")  # letters ignore case
    assert natural_sorted(["a10b2", "a10b10", "a9", "a"]) == ["a", "a9", "a10b2", "a10b10"]


def test_the_real_headers_tensors_come_out_block_by_block(smollm2_path: Path) -> None:
    tensors = read_gguf_file(smollm2_path).tensors
    in_file = [t.name for t in tensors]
    assert in_file.index("blk.10.attn_q.weight") < in_file.index("blk.2.attn_q.weight")  # the bug
    ordered = natural_sorted(tensors, key=lambda t: t.name)
    assert sorted(t.name for t in ordered) == sorted(in_file)  # the same tensors
    blocks = [int(m.group(1)) for t in ordered if (m := re.match(r"blk\.(\d+)\.", t.name))]
    assert blocks == sorted(blocks) and blocks[0] == 0 and blocks[-1] == 29

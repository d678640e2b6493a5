"""Importance matrices computed through the engine, checked against llama.cpp's own llama-imatrix
on the same model and text: the same entries, the same token counts, the same sums (to float
rounding: both add squares in float32, in different orders) — for a dense model and for stacked
MoE experts, whose rows are routed per token."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.errors import Cancelled, CorruptModelError
from app.core.model.imatrix_file import Imatrix, ImatrixEntry, read_imatrix, write_imatrix
from app.engine.errors import TextTooShortError
from app.engine.imatrix import calibration_text, compute_imatrix
from tests.engine.test_expert_offload import MOE_12
from tests.llama_tools import require_tool
from tests.synthetic import write_synthetic_gguf

pytest.importorskip("llama_cpp")

CTX = 128  # short chunks keep each run to seconds on two cores; the method does not depend on it


def llama_imatrix(
    model: Path, text: Path, out: Path, *, chunks: int, ctx: int = CTX, fmt: str = "gguf"
) -> Path:
    exe = require_tool("llama-imatrix")
    subprocess.run([str(exe), "-m", str(model), "-f", str(text), "-c", str(ctx), "-b", str(ctx), "--chunks",
                    str(chunks), "--no-ppl", "-t", "2", "-o", str(out), "--output-format", fmt],
                   check=True, capture_output=True)  # fmt: skip
    return out


def assert_same_statistics(ours: Imatrix, theirs: Imatrix) -> None:
    assert sorted(ours.entries) == sorted(theirs.entries)
    assert (ours.chunk_count, ours.chunk_size) == (theirs.chunk_count, theirs.chunk_size)
    for name, e in theirs.entries.items():
        mine = ours.entries[name]
        assert mine.sums.shape == e.sums.shape, name
        assert np.array_equal(mine.counts, e.counts), name
        np.testing.assert_allclose(
            mine.sums, e.sums, rtol=2e-4, atol=1e-6 * float(np.abs(e.sums).max()), err_msg=name
        )


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "calibration.txt"
    path.write_text(calibration_text(), encoding="utf-8")
    return path


def test_dense_model_matches_llama_imatrix(smollm2_path: Path, text_file: Path, tmp_path: Path) -> None:
    seen: list[int] = []
    res = compute_imatrix(smollm2_path, tmp_path / "ours.gguf", text=text_file.read_text(encoding="utf-8"),
                          text_name=text_file.name, n_ctx=CTX, n_chunks=3, n_threads=2,
                          on_progress=lambda p: seen.append(p.chunks_done))  # fmt: skip
    assert seen == [1, 2, 3] and res.n_tokens == 3 * CTX
    ours = read_imatrix(res.path)
    theirs = read_imatrix(llama_imatrix(smollm2_path, text_file, tmp_path / "theirs.gguf", chunks=3))
    assert res.n_entries == len(ours.entries) == 30 * 7  # q, k, v, o, gate, up, down in each of 30 layers
    assert_same_statistics(ours, theirs)
    assert ours.datasets == ("calibration.txt",)
    # Every token of every chunk reached every layer, the last one included.
    assert all(int(e.counts[0]) == 3 * CTX for e in ours.entries.values())


def test_moe_experts_match_llama_imatrix(text_file: Path, tmp_path: Path) -> None:
    model = write_synthetic_gguf(MOE_12, tmp_path / "moe12-F16.gguf")
    res = compute_imatrix(model, tmp_path / "ours.gguf", text=text_file.read_text(encoding="utf-8"),
                          text_name=text_file.name, n_ctx=CTX, n_chunks=2, n_threads=2)  # fmt: skip
    ours, theirs = (
        read_imatrix(res.path),
        read_imatrix(llama_imatrix(model, text_file, tmp_path / "t.gguf", chunks=2)),
    )
    assert_same_statistics(ours, theirs)
    experts = ours.entries["blk.3.ffn_down_exps.weight"]
    assert experts.sums.shape[0] == MOE_12["num_experts"]
    # Two experts per token: the routed rows add up to twice the tokens.
    assert int(experts.counts.sum()) == 2 * 2 * CTX


def test_the_old_format_reads_as_the_same_values(smollm2_path: Path, text_file: Path, tmp_path: Path) -> None:
    gguf = read_imatrix(llama_imatrix(smollm2_path, text_file, tmp_path / "m.gguf", chunks=2))
    dat = read_imatrix(llama_imatrix(smollm2_path, text_file, tmp_path / "m.dat", chunks=2, fmt="dat"))
    assert dat.legacy and not gguf.legacy and sorted(dat.entries) == sorted(gguf.entries)
    a, b = gguf.values(), dat.values()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, err_msg=name)


def test_written_file_reads_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    entries = {
        "blk.0.ffn_up.weight": ImatrixEntry(rng.random((1, 64), dtype=np.float32), np.array([300])),
        "blk.0.ffn_up_exps.weight": ImatrixEntry(
            rng.random((4, 32), dtype=np.float32), np.array([5, 0, 7, 1])
        ),
    }
    path = write_imatrix(tmp_path / "m.gguf", Imatrix(entries, ("a text",), 3, 100))
    back = read_imatrix(path)
    assert (back.datasets, back.chunk_count, back.chunk_size) == (("a text",), 3, 100)
    for name, e in entries.items():
        assert np.array_equal(back.entries[name].sums, e.sums) and np.array_equal(
            back.entries[name].counts, e.counts
        )
    values = back.entries["blk.0.ffn_up_exps.weight"].values()
    assert np.all(values[1] == 1.0)  # an expert never routed to gets ones, as llama-quantize gives it
    assert np.array_equal(values[0], e.sums[0] / np.float32(5))
    assert not list(tmp_path.glob(".*"))  # no temporary left beside it


@pytest.mark.parametrize("damage", ["truncate", "garbage", "nan"])
def test_a_damaged_file_is_one_clear_error(
    smollm2_path: Path, text_file: Path, tmp_path: Path, damage: str
) -> None:
    good = write_imatrix(tmp_path / "good.gguf", Imatrix({"blk.0.attn_q.weight": ImatrixEntry(
        np.ones((1, 576), np.float32), np.array([10]))}, (), 1, 512))  # fmt: skip
    raw = good.read_bytes()
    bad = tmp_path / "bad.gguf"
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) - 100])
    elif damage == "garbage":
        bad.write_bytes(b"\x05\x00\x00\x00" + bytes(range(256)) * 4)
    else:
        bad.write_bytes(raw[: -4 * 576 - 32] + np.full(576, np.nan, np.float32).tobytes() + raw[-32:])
    with pytest.raises(CorruptModelError):
        read_imatrix(bad)


def test_too_short_a_text_and_cancel_leave_nothing(smollm2_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    with pytest.raises(TextTooShortError):
        compute_imatrix(smollm2_path, out, text="Only a few words.", n_threads=2)
    cancel = threading.Event()

    def stop(p: Any) -> None:
        cancel.set()

    with pytest.raises(Cancelled):
        compute_imatrix(
            smollm2_path, out, n_ctx=CTX, n_chunks=4, n_threads=2, on_progress=stop, cancel=cancel
        )
    assert not list(tmp_path.iterdir())

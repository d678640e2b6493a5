"""The GGUF header reader against the `gguf` package's reader, on damaged files, and against
llama.cpp's own parser on everything it refuses (issue 13)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gguf
import pytest

from app.core.errors import CorruptModelError, ModelNotFoundError, ModelReadError, NotAGGUFError
from app.core.model.gguf_header import MAX_TENSORS, ArrayLength, read_gguf_file, read_header
from tests.gguf_doc import (
    ARRAY,
    F32,
    KV,
    STRING,
    U32,
    U64,
    Doc,
    Row,
    cut_vocabulary,
    read_doc,
    relayout,
    value,
    write_doc,
)
from tests.gguf_referee import Verdict, referee


class RangeOnly:
    """A ByteSource that, like an HTTP range reader, only serves what is asked and counts it."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.bytes_served = 0

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, size: int) -> bytes:
        chunk = self.data[offset : offset + size]
        self.bytes_served += len(chunk)
        return chunk


@pytest.mark.parametrize("which", ["smollm2_path", "gemma3_path"])
def test_header_matches_gguf_package(which: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    ours = read_gguf_file(path)
    ref = gguf.GGUFReader(str(path))
    assert len(ours.tensors) == len(ref.tensors)
    for a, b in zip(ours.tensors, ref.tensors, strict=True):
        assert a.name == b.name
        assert a.shape == tuple(int(x) for x in b.shape)
        assert a.type_name == b.tensor_type.name
        assert a.n_bytes == b.n_bytes
        assert ours.data_offset_bytes + a.offset_bytes == b.data_offset
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue
        value = ours.metadata[key]
        if isinstance(value, ArrayLength):
            assert value.length == len(field.data)
        else:
            assert (
                value == pytest.approx(field.contents())
                if isinstance(value, float)
                else value == field.contents()
            )


def test_header_reads_only_the_header_through_a_range_source(gemma3_path: Path) -> None:
    src = RangeOnly(gemma3_path)
    header = read_header(src)
    assert header.architecture == "gemma3"
    # The header (with a 262k-token vocabulary) is ~6.5 MB of a 253 MB file; no weights are read.
    assert src.bytes_served < header.data_offset_bytes + (1 << 20)
    assert src.bytes_served < src.size // 20


def test_truncated_file_is_reported(tmp_path: Path, smollm2_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(50_000_000))
    with pytest.raises(CorruptModelError, match="truncated"):
        read_gguf_file(cut)


def test_header_cut_short_is_reported(tmp_path: Path, smollm2_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(100_000))
    with pytest.raises(CorruptModelError, match="ends early"):
        read_gguf_file(cut)


def test_not_a_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 this is a zip file" * 10)
    with pytest.raises(NotAGGUFError):
        read_gguf_file(bogus)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(NotAGGUFError):
        read_gguf_file(empty)


def test_corrupt_counts_and_types(tmp_path: Path, smollm2_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    shutil.copy(smollm2_path, bad)
    with bad.open("r+b") as f:
        f.seek(8)  # tensor count
        f.write((10**12).to_bytes(8, "little"))
    with pytest.raises(CorruptModelError, match="impossible"):
        read_gguf_file(bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        read_gguf_file(tmp_path / "nope.gguf")


# --- issue 13: what llama.cpp's own parser refuses is refused here, with one clear error ----------
# Each case edits the real SmolLM2 header (vocabulary cut to 128 tokens: the same metadata and
# tensor table, fast to write) and checks that gguf_init_from_file (tests/gguf_referee.py)
# agrees: refused by both, or accepted by both.


@pytest.fixture(scope="module")
def smol(smollm2_path: Path) -> Doc:
    return cut_vocabulary(read_doc(smollm2_path), 128)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or a runaway loop."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _refused_by_both(doc: Doc, path: Path, match: str, error: type[Exception] = CorruptModelError) -> str:
    write_doc(doc, path)
    with deadline(5), pytest.raises(error, match=match) as info:
        read_gguf_file(path)
    verdict = referee([path])[0]
    assert not verdict.accepted and not verdict.died, verdict
    return str(info.value)


def _set_kv(doc: Doc, key: str, vtype: int, raw: bytes) -> None:
    kv = doc.find(key)
    if kv is None:
        doc.kvs.append(KV(key.encode(), vtype, raw))
    else:
        kv.vtype, kv.value = vtype, raw


def test_the_unmutated_cut_header_is_accepted_by_both(smol: Doc, tmp_path: Path) -> None:
    path = write_doc(smol.clone(), tmp_path / "ok.gguf")
    header = read_gguf_file(path)
    assert len(header.tensors) == len(smol.rows) and header.metadata["tokenizer.ggml.tokens"][:1] == [
        "<|endoftext|>"
    ]
    assert referee([path]) == [Verdict(True)]


def test_nested_arrays_are_refused_without_recursion(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    deep = struct.pack("<IQ", ARRAY, 1) * 100_000 + struct.pack("<IQI", U32, 1, 7)
    _set_kv(doc, "general.tags", ARRAY, deep)
    message = _refused_by_both(doc, tmp_path / "nested.gguf", "array of arrays")
    assert "'general.tags'" in message


@pytest.mark.parametrize(
    ("vtype", "raw", "match"),
    [
        (F32, value(F32, math.nan), "must be a UINT32, not FLOAT32"),
        (STRING, value(STRING, "32"), "must be a UINT32, not STRING"),
        (U64, value(U64, 32), "must be a UINT32, not UINT64"),
        (U32, value(U32, 0), "is 0, not a power of two"),
        (U32, value(U32, 48), "is 48, not a power of two"),
    ],
)
def test_a_bad_alignment_is_refused(smol: Doc, tmp_path: Path, vtype: int, raw: bytes, match: str) -> None:
    doc = smol.clone()
    _set_kv(doc, "general.alignment", vtype, raw)
    assert "general.alignment" in _refused_by_both(doc, tmp_path / "align.gguf", match)


def test_a_power_of_two_alignment_is_honoured(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    _set_kv(doc, "general.alignment", U32, value(U32, 4096))
    doc.alignment = 4096
    relayout(doc)
    path = write_doc(doc, tmp_path / "align4096.gguf")
    header = read_gguf_file(path)
    assert header.data_offset_bytes % 4096 == 0 and header.tensors[1].offset_bytes % 4096 == 0
    assert referee([path]) == [Verdict(True)]


@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, (1 << 30) + 1, 1_000_000_000])
def test_an_array_longer_than_the_file_is_refused_at_once(smol: Doc, tmp_path: Path, length: int) -> None:
    doc = smol.clone()
    _set_kv(doc, "general.tags", ARRAY, struct.pack("<IQ", U32, length))
    _refused_by_both(doc, tmp_path / "long.gguf", "claims|ends early")


def test_duplicate_keys_and_tensor_names_are_refused(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.kvs.append(KV(b"general.name", STRING, value(STRING, "another name")))
    assert "'general.name' appears twice" in _refused_by_both(doc, tmp_path / "dupkey.gguf", "twice")
    doc = smol.clone()
    doc.rows[5].name = doc.rows[3].name
    relayout(doc)
    _refused_by_both(doc, tmp_path / "duptensor.gguf", f"two tensors are named '{doc.rows[3].name.decode()}'")


@pytest.mark.parametrize("how", ["overlap", "gap", "unaligned", "out of order"])
def test_tensor_offsets_must_be_back_to_back(smol: Doc, tmp_path: Path, how: str) -> None:
    doc = smol.clone()
    rows = doc.rows
    if how == "overlap":
        rows[7].offset = rows[6].offset
    elif how == "gap":
        rows[7].offset += doc.alignment
    elif how == "unaligned":
        rows[7].offset += 1
    else:  # swap two rows, keeping their offsets: the data is no longer in table order
        rows[6], rows[7] = rows[7], rows[6]
    _refused_by_both(doc, tmp_path / "offsets.gguf", "of the data section, where the tensors before it end")


def test_more_than_four_dimensions_is_refused(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.rows[2].dims = [*doc.rows[2].dims, 1, 1, 1]
    relayout(doc)
    _refused_by_both(doc, tmp_path / "dims.gguf", "claims 5 dimensions")


def test_tensor_names_longer_than_ggml_allows_are_refused(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.rows[2].name = b"x" * 64  # GGML_MAX_NAME is 64 with the NUL
    _refused_by_both(doc, tmp_path / "name.gguf", "64 bytes long")
    doc.rows[2].name = b"x" * 63
    path = write_doc(doc, tmp_path / "name63.gguf")
    assert read_gguf_file(path).tensors[2].name == "x" * 63
    assert referee([path]) == [Verdict(True)]


@pytest.mark.parametrize(
    ("dims", "ggml_type", "match"),
    [
        ([1 << 63, 1], 0, "impossible shape"),  # negative as llama.cpp's int64_t
        ([1 << 32, 1 << 32], 0, "impossible shape"),  # 2^64 elements
        ([100, 4], 12, "not whole Q4_K blocks of 256"),
        ([], 12, "rows of 1 values, not whole Q4_K blocks"),
    ],
)
def test_impossible_shapes_are_refused(
    smol: Doc, tmp_path: Path, dims: list[int], ggml_type: int, match: str
) -> None:
    doc = smol.clone()
    doc.rows[4].dims, doc.rows[4].ggml_type = dims, ggml_type
    relayout(doc)
    _refused_by_both(doc, tmp_path / "shape.gguf", match)


def test_a_tensor_of_no_dimensions_is_one_value(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.rows[4].dims, doc.rows[4].ggml_type = [], 0  # F32: ggml pads ne to {1, 1, 1, 1}
    relayout(doc)
    path = write_doc(doc, tmp_path / "scalar.gguf")
    t = read_gguf_file(path).tensors[4]
    assert (t.shape, t.n_elements, t.n_bytes) == ((), 1, 4)
    assert referee([path]) == [Verdict(True)]


@pytest.mark.parametrize("version", [0, 1, 4, 0x03000000])
def test_unsupported_versions_are_refused(smol: Doc, tmp_path: Path, version: int) -> None:
    doc = smol.clone()
    doc.version = version
    _refused_by_both(doc, tmp_path / "version.gguf", f"Unsupported GGUF version {version}")


def test_a_million_tensors_is_refused_at_once(smol: Doc, tmp_path: Path) -> None:
    path = write_doc(smol.clone(), tmp_path / "million.gguf")
    with path.open("r+b") as f:
        f.seek(8)
        f.write((1_000_000).to_bytes(8, "little"))
    start = time.perf_counter()
    with pytest.raises(CorruptModelError, match=r"impossible \(1,000,000 tensors"):
        read_gguf_file(path)
    assert time.perf_counter() - start < 0.5


def test_the_largest_tensor_table_we_accept_is_read_fast(smol: Doc, tmp_path: Path) -> None:
    doc = smol.clone()
    doc.rows += [Row(f"extra.{i}".encode(), [64], 0, 0) for i in range(MAX_TENSORS - len(doc.rows))]
    relayout(doc)
    path = write_doc(doc, tmp_path / "big.gguf")
    start = time.perf_counter()
    header = read_gguf_file(path)
    seconds = time.perf_counter() - start
    assert len(header.tensors) == MAX_TENSORS and seconds < 5, f"{seconds:.2f} s"
    assert referee([path]) == [Verdict(True)]
    doc.rows.append(Row(b"one.more", [64], 0, 0))
    relayout(doc)
    with pytest.raises(CorruptModelError, match="impossible"):
        read_gguf_file(write_doc(doc, tmp_path / "bigger.gguf"))


def test_a_pipe_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with deadline(5), pytest.raises(ModelReadError, match="not a regular file"):
        read_gguf_file(fifo)


def test_a_folder_and_a_dangling_link_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(NotAGGUFError, match="is a folder"):
        read_gguf_file(tmp_path)
    link = tmp_path / "gone.gguf"
    link.symlink_to(tmp_path / "nowhere.gguf")
    with pytest.raises(ModelReadError, match="cannot be read"):
        read_gguf_file(link)

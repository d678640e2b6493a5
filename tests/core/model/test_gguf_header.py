"""The GGUF header reader against the `gguf` package's reader, and on damaged files."""

from __future__ import annotations

import shutil
from pathlib import Path

import gguf
import pytest

from app.core.errors import CorruptModelError, ModelNotFoundError, NotAGGUFError
from app.core.model.gguf_header import ArrayLength, read_gguf_file, read_header


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

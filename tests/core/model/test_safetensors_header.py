"""Safetensors headers and checkpoint folders written by strangers: one clear error each, no hang,
nothing read outside the folder; the reference reader (the `safetensors` package) is the referee."""

from __future__ import annotations

import json
import os
import random
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors

from app.core.errors import CorruptModelError, ModelReadError
from app.core.model.safetensors_header import (
    DTYPE_BITS,
    MAX_HEADER_BYTES,
    checkpoint_tensors,
    read_safetensors_file,
)
from app.core.model.source import load_model, read_config


def _raw(path: Path, header: dict[str, Any], data_bytes: int) -> Path:
    """A safetensors file from a header as given (right or wrong) and ``data_bytes`` of zeros."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data_bytes))
    return path


def _one(
    dtype: str = "F32", shape: list[Any] | None = None, offsets: list[Any] | None = None
) -> dict[str, Any]:
    return {"w": {"dtype": dtype, "shape": shape or [2, 2], "data_offsets": offsets or [0, 16]}}


def _shard(folder: Path, name: str = "model.safetensors") -> Path:
    return _raw(folder / name, _one(), 16)


def _finishes(fn: Callable[[], object], seconds: float = 5.0) -> BaseException | None:
    """Run ``fn`` in a thread; fail the test if it is still running after ``seconds``. Returns
    what it raised (None when it returned)."""
    out: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            out.append(None)
        except BaseException as exc:  # the test inspects it
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (blocked on a pipe?)"
    return out[0]


def test_index_naming_a_file_outside_the_checkpoint_is_refused(tmp_path: Path) -> None:
    outside = _shard(tmp_path, "outside.safetensors")  # a valid file the index must not reach
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    _shard(ckpt, "model-00001-of-00001.safetensors")
    index = ckpt / "model.safetensors.index.json"
    for name in ("../outside.safetensors", str(outside), "sub/../../outside.safetensors"):
        index.write_text(json.dumps({"weight_map": {"w": name}}))
        with pytest.raises(ModelReadError, match="outside its folder"):
            checkpoint_tensors(ckpt)
    (ckpt / "linked.safetensors").symlink_to(outside)  # a name inside, a target outside
    index.write_text(json.dumps({"weight_map": {"w": "linked.safetensors"}}))
    with pytest.raises(ModelReadError, match="links outside its folder"):
        checkpoint_tensors(ckpt)
    index.unlink()  # without an index the folder's own *.safetensors are read: the link still may not
    with pytest.raises(ModelReadError, match="links outside its folder"):
        checkpoint_tensors(ckpt)
    (ckpt / "linked.safetensors").unlink()
    assert [t.name for t in checkpoint_tensors(ckpt)] == ["w"]


def test_a_hugging_face_cache_snapshot_may_link_to_its_blobs(tmp_path: Path) -> None:
    repo = tmp_path / "models--org--name"
    (repo / "blobs").mkdir(parents=True)
    blob = _shard(repo / "blobs", "abc123")
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(os.path.relpath(blob, snap))
    assert [t.n_bytes for t in checkpoint_tensors(snap)] == [16]
    elsewhere = _shard(tmp_path, "elsewhere.safetensors")  # outside the repo: refused even here
    (snap / "model.safetensors").unlink()
    (snap / "model.safetensors").symlink_to(elsewhere)
    with pytest.raises(ModelReadError, match="links outside"):
        checkpoint_tensors(snap)


@pytest.mark.parametrize(
    "weight_map", [["model.safetensors"], {}, {"w": 3}, "model.safetensors", None], ids=repr
)
def test_an_index_whose_weight_map_is_not_a_map_of_files_is_refused(tmp_path: Path, weight_map: Any) -> None:
    _shard(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(CorruptModelError, match="weight_map"):
        checkpoint_tensors(tmp_path)


def test_config_json_that_is_a_folder_or_nested_too_deep_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(ModelReadError, match="not a regular file"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").rmdir()
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptModelError, match="nested too deep"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(CorruptModelError, match="not valid JSON"):
        read_config(tmp_path)


def test_pipes_named_like_checkpoint_files_are_refused_without_opening(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text("{}")
    err = _finishes(lambda: checkpoint_tensors(tmp_path))
    assert isinstance(err, ModelReadError) and "not a regular file" in str(err)
    err = _finishes(lambda: read_safetensors_file(tmp_path / "model.safetensors"))
    assert isinstance(err, ModelReadError) and "not a regular file" in str(err)
    (tmp_path / "config.json").unlink()
    os.mkfifo(tmp_path / "config.json")
    err = _finishes(lambda: read_config(tmp_path))
    assert isinstance(err, ModelReadError) and "not a regular file" in str(err)


def test_symlink_loops_in_a_checkpoint_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").symlink_to("model.safetensors")
    with pytest.raises(ModelReadError, match="cannot be read"):
        checkpoint_tensors(tmp_path)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        (_one(offsets=[16, 0]), 16, "run backwards"),
        (_one(offsets=[-16, 0]), 16, "run backwards"),
        (_one(dtype="F128"), 16, "unknown dtype"),
        (_one(dtype=["F32"]), 16, "unknown dtype"),  # type: ignore[arg-type]
        (_one(shape=[2, -2]), 16, "invalid shape"),
        (_one(shape=[2.0, 2]), 16, "invalid shape"),
        (_one(shape=[True, 4]), 16, "invalid shape"),
        (_one(shape=[2**40, 2**40]), 16, "too large"),
        (_one(shape=[3, 2]), 16, "need 24"),
        (_one(offsets=[0, "16"]), 16, "invalid data offsets"),
        ({"w": [1, 2]}, 16, "not an object"),
        ({**_one(), "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16, "overlap or gap"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, 16, "overlap or gap"),
        ({**_one(), "__metadata__": {"format": 1}}, 16, "__metadata__"),
        (_one(), 17, "follow the last tensor"),
        (_one(), 15, "truncated"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_damaged_headers_are_one_clear_error(
    tmp_path: Path, header: dict[str, Any], data: int, message: str
) -> None:
    path = _raw(tmp_path / "x.safetensors", header, data)
    with pytest.raises(CorruptModelError, match=message):
        read_safetensors_file(path)
    with pytest.raises(safetensors.SafetensorError):  # the reference reader refuses it too
        safetensors.deserialize(path.read_bytes())


def test_header_lengths_are_bounded_by_the_formats_limit(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    for n in (2**63, MAX_HEADER_BYTES + 1):
        path.write_bytes(struct.pack("<Q", n) + b"{}")
        with pytest.raises(CorruptModelError, match="header length"):
            read_safetensors_file(path)
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES) + b"{}")  # allowed, but not in the file
    with pytest.raises(CorruptModelError, match="truncated inside its header"):
        read_safetensors_file(path)
    raw = b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    with pytest.raises(CorruptModelError, match="twice"):
        read_safetensors_file(path)


def _reference_file(path: Path) -> bytes:
    """A real safetensors file from the reference writer, with several dtypes and a packed one
    (names as its torch front end spells them; F4 packs two elements to a byte)."""
    rng = np.random.default_rng(0)
    specs = {"a.weight": ("float32", (3, 4), 48), "b.bias": ("bfloat16", (5,), 10), "c": ("int8", (2, 3, 2), 12),
             "d": ("uint16", (4,), 8), "e": ("float4_e2m1fn_x2", (2, 2), 4), "f": ("float8_e4m3fn", (6,), 6),
             "g": ("bool", (0,), 0)}  # fmt: skip
    arrays = {
        name: np.frombuffer(rng.bytes(n) or b"\0", np.uint8).copy() for name, (_, _, n) in specs.items()
    }
    tensors = {  # the specs point into `arrays`, which stay alive until serialize_file returns
        name: safetensors.TensorSpec(dtype=d, shape=shape, data_ptr=arrays[name].ctypes.data, data_len=n)
        for name, (d, shape, n) in specs.items()
    }
    safetensors.serialize_file(tensors, str(path), metadata={"format": "pt"})
    return path.read_bytes()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """One of the damages a careless writer or an attacker makes, at a random place."""
    (n,) = struct.unpack("<Q", data[:8])
    header, body = json.loads(data[8 : 8 + n]), data[8 + n :]
    key = rng.choice([k for k in header if k != "__metadata__"])
    entry = header[key]
    what = rng.randrange(9)
    if what == 0:
        entry["dtype"] = rng.choice([*DTYPE_BITS, "F128", "", 7, None])
    elif what == 1:
        entry["shape"] = [rng.choice([0, 1, 2, 3, -1, 2**62, 1.5, True]) for _ in range(rng.randrange(4))]
    elif what == 2:
        i = rng.randrange(2)
        entry["data_offsets"][i] += rng.choice([-8, -1, 1, 8, -(10**6), 2**63])
    elif what == 3:
        entry["data_offsets"] = entry["data_offsets"][::-1]
    elif what == 4:
        del header[key]
    elif what == 5:
        header["__metadata__"] = rng.choice([{"x": 1}, ["x"], "x", {"format": "pt"}])
    elif what == 6:
        body = (
            body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + bytes(rng.randrange(1, 9))
        )
    elif what == 7:
        entry[rng.choice(["dtype", "shape", "data_offsets"])] = rng.choice([None, {}, [], "x", 3])
    raw = json.dumps(header).encode()
    length = len(raw) + (rng.choice([-3, -1, 1, 2**40]) if what == 8 else 0)
    return struct.pack("<Q", max(length, 0)) + raw + body


def test_seeded_mutations_agree_with_the_reference_reader(tmp_path: Path) -> None:
    """Every header we accept, the reference reader accepts with the same tensors; every one it
    refuses we refuse with a CorruptModelError; nothing else escapes."""
    real = _reference_file(tmp_path / "real.safetensors")
    rng = random.Random(13)
    path = tmp_path / "m.safetensors"
    accepted = refused = 0
    for _ in range(400):
        data = _mutate(rng, real)
        path.write_bytes(data)
        try:
            ours = {t.name: (t.dtype, list(t.shape)) for t in read_safetensors_file(path)}
        except CorruptModelError:
            ours = None
        try:
            ref = {k: (v["dtype"], v["shape"]) for k, v in safetensors.deserialize(data)}
        except safetensors.SafetensorError:
            ref = None
        assert ours is None or ours == ref, data[:300]
        assert ref is not None or ours is None
        accepted += ours is not None
        refused += ours is None
    assert accepted > 20 and refused > 200  # both sides of the line were exercised

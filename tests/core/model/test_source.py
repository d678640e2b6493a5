"""What the user types → ModelInfo: GGUF files (single and split), checkpoint folders, errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from app.core.errors import CorruptModelError, MissingConfigError, ModelNotFoundError
from app.core.model.gguf_header import read_gguf_file
from app.core.model.safetensors_header import checkpoint_tensors, read_safetensors_file
from app.core.model.source import load_model, model_from_gguf


def test_real_gguf_metadata(smollm2_path: Path, gemma3_path: Path) -> None:
    smol = load_model(str(smollm2_path))
    assert (smol.architecture, smol.n_layer, smol.n_embd, smol.n_vocab) == ("llama", 30, 576, 49152)
    assert smol.n_head == (9,) * 30 and smol.n_head_kv == (3,) * 30 and smol.head_dim_k == 64
    assert smol.n_ff == 1536 and smol.n_ctx_train == 8192 and smol.tied_embeddings
    assert smol.file_type == "Q4_1" and smol.sliding_window == 0 and not smol.is_moe
    assert 134e6 < smol.n_params < 135e6  # SmolLM2-135M
    gem = load_model(str(gemma3_path))
    assert (gem.architecture, gem.n_layer, gem.n_embd, gem.n_vocab) == ("gemma3", 18, 640, 262144)
    assert gem.head_dim_k == gem.head_dim_v == 256 and gem.n_head_kv[0] == 1
    assert gem.sliding_window == 512 and gem.swa_layers[:6] == (True,) * 5 + (False,)
    assert gem.file_type == "Q4_K_M" and gem.n_ctx_train == 32768


def _write_split(src: Path, folder: Path, n_parts: int) -> list[Path]:
    """Split a real GGUF's header into n parts (tensor data left sparse: only headers are read)."""
    reader = gguf.GGUFReader(str(src))
    tensors = list(reader.tensors)
    per = -(-len(tensors) // n_parts)
    paths = []
    for i in range(n_parts):
        path = folder / f"model-{i + 1:05d}-of-{n_parts:05d}.gguf"
        w = gguf.GGUFWriter(str(path), arch="llama")
        if i == 0:
            for key, field in reader.fields.items():
                if key.startswith(("GGUF.", "general.architecture")) or key.startswith("tokenizer."):
                    continue
                w.add_key_value(
                    key,
                    field.contents(),
                    field.types[0],
                    sub_type=field.types[-1] if len(field.types) > 1 else None,
                )
        w.add_uint16("split.no", i)
        w.add_uint16("split.count", n_parts)
        w.add_int32("split.tensors.count", len(tensors))
        size = 0
        for t in tensors[i * per : (i + 1) * per]:
            np_shape = tuple(reversed([int(x) for x in t.shape]))
            byte_shape = gguf.quant_shape_to_byte_shape(np_shape, t.tensor_type)
            w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), int(t.n_bytes), raw_dtype=t.tensor_type)
            size += (int(t.n_bytes) + 31) // 32 * 32
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()
        with path.open("r+b") as f:  # sparse: the size is right, no bytes are written
            f.truncate(path.stat().st_size + size + 64)
        paths.append(path)
    return paths


def test_split_gguf_is_one_model(tmp_path: Path, smollm2_path: Path) -> None:
    parts = _write_split(smollm2_path, tmp_path, 3)
    assert int(read_gguf_file(parts[0]).metadata["split.count"]) == 3
    whole = model_from_gguf(parts[0])
    single = load_model(str(smollm2_path))
    assert len(whole.tensors) == len(single.tensors)
    assert whole.weight_bytes == single.weight_bytes
    parts[2].unlink()
    with pytest.raises(CorruptModelError, match="missing"):
        model_from_gguf(parts[0])


def _write_safetensors(
    path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], *, truncate: int = 0
) -> None:
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset - truncate)


def test_safetensors_headers(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a.weight": ("BF16", (4, 8))})
    _write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b.weight": ("BF16", (8,))})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}))  # fmt: skip
    got = {t.name: (t.dtype, t.shape, t.n_bytes) for t in checkpoint_tensors(tmp_path)}
    assert got == {"a.weight": ("BF16", (4, 8), 64), "b.weight": ("BF16", (8,), 16)}
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CorruptModelError, match="missing"):
        checkpoint_tensors(tmp_path)


def test_truncated_and_garbage_safetensors(tmp_path: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    _write_safetensors(cut, {"a.weight": ("F16", (64, 64))}, truncate=100)
    with pytest.raises(CorruptModelError, match="truncated"):
        read_safetensors_file(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 20) + b"{not json at all!!!}")
    with pytest.raises(CorruptModelError, match="damaged"):
        read_safetensors_file(junk)


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"")
    with pytest.raises(MissingConfigError, match=r"no config\.json") as err:
        load_model(str(tmp_path))
    assert "model.gguf" in (err.value.hint or "")


def test_corrupt_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{ this is not json")
    with pytest.raises(CorruptModelError, match="not valid JSON"):
        load_model(str(tmp_path))


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        load_model(str(tmp_path / "nothing-here.gguf"))


SMOLLM2_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rope_theta": 100000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
}  # fmt: skip


def _checkpoint(folder: Path, config: dict[str, object], *, drop: int = 0) -> None:
    """A checkpoint folder: config.json plus sparse safetensors shards with the model's tensors."""
    from app.core.model.hf_arch import header_from_hf_config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    tensors = header_from_hf_config(config, dtype="BF16").tensors
    tensors = tensors[: len(tensors) - drop]
    half = len(tensors) // 2
    for i, part in enumerate((tensors[:half], tensors[half:])):
        _write_safetensors(folder / f"model-0000{i + 1}-of-00002.safetensors",
                           {t.name: ("BF16" if len(t.shape) > 1 else "F32", tuple(reversed(t.shape))) for t in part})  # fmt: skip


def test_checkpoint_folder(tmp_path: Path, smollm2_path: Path) -> None:
    _checkpoint(tmp_path / "SmolLM2-135M-Instruct", SMOLLM2_CONFIG)
    m = load_model(str(tmp_path / "SmolLM2-135M-Instruct"))
    assert m.source_kind == "hf_dir" and m.file_type == "BF16"
    gguf_model = load_model(str(smollm2_path))
    assert m.n_params == gguf_model.n_params  # the same model, described from the checkpoint
    assert sorted(t.name for t in m.tensors) == sorted(t.name for t in gguf_model.tensors)


def test_checkpoint_missing_tensors_is_reported(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "ckpt", SMOLLM2_CONFIG, drop=120)
    with pytest.raises(CorruptModelError, match="parameters"):
        load_model(str(tmp_path / "ckpt"))

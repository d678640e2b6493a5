"""Quantizing with llama.cpp's quantizer in a child process, and every way a conversion can be
refused before it starts: real files, real subprocesses, one clear message, no half file."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from app.core.build.convert import ConversionError, check_checkpoint, predicted_bytes
from app.core.errors import Cancelled, CorruptModelError, HubError, MissingConfigError
from app.core.library.registry import Library
from app.core.model.source import model_from_gguf
from app.engine.build import build_gguf
from app.engine.quantize import quantize


def test_quantize_makes_a_loadable_file_of_the_predicted_size_and_registers_it(
    smollm2_path: Path, tmp_path: Path
) -> None:
    seen: list[float] = []
    res = build_gguf(smollm2_path, "Q8_0", out=tmp_path / "smol-Q8_0.gguf", n_threads=2,
                     on_progress=lambda p: seen.append(p.fraction) if p.stage == "quantize" else None)  # fmt: skip
    assert model_from_gguf(res.path).file_type == "Q8_0"
    assert res.size_bytes == pytest.approx(predicted_bytes(model_from_gguf(smollm2_path), "Q8_0"), rel=0.001)
    assert res.sample.strip()  # it loads and writes; which words depends on the CPU, so none are expected
    assert seen and seen == sorted(seen) and seen[-1] == 1.0  # one step per tensor, in order
    assert any("cannot bring back" in w for w in res.warnings)  # Q4_1 → Q8_0 is not a real Q8_0
    entry = Library().find(res.library_id or "")
    assert entry.owned and entry.provenance["via"] == "quantize" and entry.provenance["type"] == "Q8_0"
    with pytest.raises(ConversionError, match="already exists"):
        build_gguf(smollm2_path, "Q8_0", out=res.path)


def test_cancel_mid_quantization_leaves_no_file(smollm2_path: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    out = tmp_path / "smol-Q5_K_M.gguf"

    def stop(p: object) -> None:
        if p.fraction > 0.2:  # type: ignore[attr-defined]
            cancel.set()

    with pytest.raises(Cancelled):
        quantize(smollm2_path, out, to="Q5_K_M", n_threads=1, on_progress=stop, cancel=cancel)
    assert not list(tmp_path.iterdir())  # neither the output nor its temporary


def test_a_corrupt_or_truncated_source_is_one_clear_error(smollm2_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2_path.open("rb") as f:
        cut.write_bytes(f.read(2_000_000))
    with pytest.raises(CorruptModelError):
        quantize(cut, tmp_path / "o.gguf", to="Q4_K_M")
    assert not (tmp_path / "o.gguf").exists()


def test_a_full_disk_is_caught_before_quantizing(smollm2_path: Path, small_disk: Path) -> None:
    with pytest.raises(HubError, match="Not enough disk space"):
        quantize(smollm2_path, small_disk / "o.gguf", to="Q8_0")
    assert not list(small_disk.iterdir())


def _checkpoint_folder(tmp_path: Path, *, config: dict[str, object] | None, tokenizer: bool = True,
                       weights: bytes | None = None) -> Path:  # fmt: skip
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if tokenizer:
        (folder / "tokenizer.json").write_text("{}")
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256,
         "max_position_embeddings": 512, "torch_dtype": "float32"}  # fmt: skip


def test_bad_checkpoints_are_refused_with_one_clear_message(tmp_path: Path, smollm2_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    good_weights = len(header).to_bytes(8, "little") + header + bytes(16)
    cases = [
        ({"config": None, "weights": good_weights}, MissingConfigError, "no config.json"),
        ({"config": {**LLAMA, "architectures": ["FooBarForCausalLM"]}, "weights": good_weights}, ConversionError,
         "does not know the architecture FooBarForCausalLM"),
        ({"config": LLAMA, "tokenizer": False, "weights": good_weights}, ConversionError, "no tokenizer"),
        ({"config": LLAMA, "weights": None}, ConversionError, "no .safetensors"),
        ({"config": LLAMA, "weights": b"\xff" * 64}, CorruptModelError, "not a valid safetensors"),
        ({"config": LLAMA, "weights": good_weights[:-8]}, CorruptModelError, "truncated"),
        ({"config": LLAMA, "weights": good_weights}, CorruptModelError, "files are missing"),  # 4 weights, not ~60k
    ]  # fmt: skip
    for i, (kw, err, text) in enumerate(cases):
        case = tmp_path / str(i)
        case.mkdir()
        folder = _checkpoint_folder(case, **kw)  # type: ignore[arg-type]
        with pytest.raises(err, match=text):
            check_checkpoint(folder, known={"LlamaForCausalLM"})
    shutil.copyfile(smollm2_path, tmp_path / "m.gguf")
    with pytest.raises(MissingConfigError) as info:
        check_checkpoint(tmp_path)  # a folder of GGUFs: say which file to use instead
    assert "m.gguf" in (info.value.hint or "")


def test_the_quantizers_child_loads_llama_cpp_without_numpy() -> None:
    """The quantizer's child takes llama-cpp-python's bindings without its package (no numpy, jinja2
    or gguf: a tenth of a second of a small model's quantization), and they work."""
    import subprocess
    import sys

    code = ("import sys; from app.engine.host import llama_bindings; L = llama_bindings(); "
            "p = L.llama_model_quantize_default_params(); "
            "print(p.nthread, p.quantize_output_tensor, sorted(m for m in ('numpy', 'jinja2', 'gguf') if m in sys.modules))")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split(maxsplit=2) == ["0", "True", "[]\n"]

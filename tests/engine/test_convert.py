"""HF checkpoint → GGUF with llama.cpp's official converter (in its own environment), then
quantized: a real checkpoint rebuilt from the SmolLM2 GGUF must come back byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.core.build.convert import ConversionError, converter_ready
from app.core.errors import Cancelled
from app.core.library.registry import Library
from app.core.model.source import model_from_gguf
from app.engine.build import build_gguf
from tests.hf_checkpoint import (
    build_checkpoint,
    compare_logits,
    compare_tensors,
    llama_tokenize,
    write_reference_f16,
)

pytestmark = pytest.mark.slow
PROMPTS = ["The capital of France is", "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
           "<|im_start|>user\nWhat is 12345 * 678?<|im_end|>\n<|im_start|>assistant\n"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not converter_ready():
        pytest.fail(
            "llama.cpp's converter is not set up: run `python -m app.cli convert --setup` (scripts/test.sh does)"
        )
    return build_checkpoint(smollm2_path, tmp_path_factory.mktemp("ckpt") / "SmolLM2-135M-Instruct")


@pytest.fixture(scope="module")
def reference(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reference_f16(smollm2_path, tmp_path_factory.mktemp("ref") / "reference-F16.gguf")


@pytest.fixture(scope="module")
def f16(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_gguf(
        checkpoint, "F16", out=tmp_path_factory.mktemp("f16") / "smol-F16.gguf", n_threads=2
    ).path


def test_f16_conversion_is_the_dequantized_original_byte_for_byte(
    f16: Path, reference: Path, smollm2_path: Path
) -> None:
    assert compare_tensors(f16, reference) == []
    assert compare_logits(f16, reference, PROMPTS) == 0.0
    texts = [*PROMPTS, "naïve café — 東京 🤖 3.14159"]
    assert llama_tokenize(f16, texts) == llama_tokenize(smollm2_path, texts)
    meta = model_from_gguf(f16)
    assert meta.file_type == "F16" and meta.architecture == "llama"


def test_convert_and_quantize_rank_as_expected_and_register(
    checkpoint: Path, f16: Path, tmp_path: Path
) -> None:
    stages: list[str] = []
    q8 = build_gguf(checkpoint, "Q8_0", out=tmp_path / "smol-Q8_0.gguf", n_threads=2,
                    on_progress=lambda p: stages.append(p.stage))  # fmt: skip
    q4 = build_gguf(f16, "Q4_K_M", out=tmp_path / "smol-Q4_K_M.gguf", n_threads=2)
    assert "convert" in stages and "check" in stages  # Q8_0 comes straight from the converter
    assert q8.sample.strip() and q4.sample.strip()  # both load and write (the words depend on the CPU)
    assert model_from_gguf(q8.path).file_type == "Q8_0" and model_from_gguf(q4.path).file_type == "Q4_K_M"
    assert not list(tmp_path.glob(".*"))  # no temporary or intermediate left behind
    entry = Library().find(q8.library_id or "")
    assert entry.provenance == {"source": str(checkpoint), "type": "Q8_0", "via": "convert"}
    # `tailorlm quality`: Q8_0 is closer to the F16 reference than Q4_K_M, as the advisor's table says.
    from app.engine.quality_eval import default_text, evaluate

    text = default_text()[:6000]
    r8, r4 = (evaluate(f16, q, text, n_ctx=256, n_threads=2) for q in (q8.path, q4.path))
    assert 0 < r8.kld_mean < r4.kld_mean and r8.top1_agreement > r4.top1_agreement
    assert abs(r8.ppl_cand - r8.ppl_ref) < abs(r4.ppl_cand - r4.ppl_ref)


def test_checkpoint_to_k_quant_goes_through_a_16_bit_intermediate(checkpoint: Path, tmp_path: Path) -> None:
    res = build_gguf(
        checkpoint, "Q4_K_M", out=tmp_path / "o.gguf", n_threads=2, smoke_test=False, register=False
    )
    assert set(res.timings_s) == {"convert", "quantize"}
    assert [p.name for p in tmp_path.iterdir()] == ["o.gguf"]


def test_cancel_mid_conversion_leaves_no_file(checkpoint: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def stop(p: object) -> None:
        if p.stage == "convert" and p.fraction > 0.1:  # type: ignore[attr-defined]
            cancel.set()

    with pytest.raises(Cancelled):
        build_gguf(checkpoint, "F16", out=tmp_path / "o.gguf", on_progress=stop, cancel=cancel)
    assert not list(tmp_path.iterdir())


def test_an_unrecognised_tokenizer_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in checkpoint.iterdir():
        os.link(f, broken / f.name)
    tok = json.loads((checkpoint / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]  # swap two digits: a tokenizer llama.cpp's hash table does not know
    vocab["3"], vocab["4"] = vocab["4"], vocab["3"]
    (broken / "tokenizer.json").unlink()
    (broken / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ConversionError, match="tokenizer"):
        build_gguf(broken, "F16", out=tmp_path / "o.gguf")
    assert not (tmp_path / "o.gguf").exists()


def test_cli_convert_json(checkpoint: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "app.cli", "convert", str(checkpoint), "--to", "Q8_0", "--out",
                          str(tmp_path / "c.gguf"), "--json"], capture_output=True, text=True, timeout=600,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["file_type"] == "Q8_0" and Path(data["path"]).is_file() and data["library_id"]

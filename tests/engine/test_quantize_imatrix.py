"""Quantizing with an importance matrix and per-tensor overrides: the file TailorLM writes is
byte-identical to what llama.cpp's own llama-quantize writes from the same source, matrix and
``--tensor-type`` patterns, and its size was predicted to the byte before it was written."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.core.build.convert import predicted_bytes
from app.core.errors import ConversionError
from app.core.model.gguf_header import read_gguf_file
from app.core.model.imatrix_file import imatrix_kv, read_imatrix
from app.core.model.source import model_from_gguf
from app.engine.imatrix import calibration_text, compute_imatrix
from app.engine.quantize import parse_keep, quantize
from tests.engine.test_expert_offload import MOE_12
from tests.llama_tools import require_tool
from tests.synthetic import write_synthetic_gguf
from tests.test_cli import tailorlm

pytest.importorskip("llama_cpp")

# Llama-shaped, widths that are multiples of 256 so that the IQ types apply to every matrix
# (SmolLM2's 576-wide rows fall back to IQ4_NL, and take a minute per file on two cores).
TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 2048,
}  # fmt: skip
KEEP = ("attn_v=Q8_0", "FFN_DOWN=q6_k", "output=Q8_0")  # patterns lower-cased, as llama-quantize does


def _matrix(model: Path, folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return compute_imatrix(model, folder / "model.imatrix.gguf", n_ctx=128, n_chunks=2, n_threads=2).path


def llama_quantize(src: Path, out: Path, ftype: str, matrix: Path | None, keep: tuple[str, ...] = ()) -> Path:
    """llama-quantize run beside the matrix and given its bare name, as TailorLM records it."""
    exe = require_tool("llama-quantize")
    args = [str(exe), "--allow-requantize"]
    if matrix is not None:
        args += ["--imatrix", matrix.name]
    for k in keep:
        args += ["--tensor-type", k]
    subprocess.run([*args, str(src), str(out), ftype, "2"], check=True, capture_output=True,
                   cwd=matrix.parent if matrix else None)  # fmt: skip
    return out


def _same_file_as_llama(src: Path, ftype: str, matrix: Path | None, keep: tuple[str, ...], tmp: Path) -> Path:
    ours, _ = quantize(
        src, tmp / f"ours-{ftype}.gguf", to=ftype, imatrix=matrix, keep=parse_keep(keep), n_threads=2
    )
    assert [p.name for p in tmp.iterdir()] == [ours.name]  # the matrix's values file is gone too
    theirs = llama_quantize(src, tmp / f"llama-{ftype}.gguf", ftype, matrix, keep)
    assert ours.read_bytes() == theirs.read_bytes(), f"{ftype}: TailorLM's file differs from llama-quantize's"
    model = model_from_gguf(src)
    kv = imatrix_kv(matrix, read_imatrix(matrix)) if matrix else None
    assert ours.stat().st_size == predicted_bytes(model, ftype, imatrix=kv, overrides=parse_keep(keep))
    return ours


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    model = write_synthetic_gguf(TINY_LLAMA, folder / "tiny-F16.gguf")
    return model, _matrix(model, folder / "m")


@pytest.mark.parametrize("ftype", ["IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_XS"])
def test_iq_types_with_a_matrix_are_byte_identical_to_llama_quantize(
    tiny: tuple[Path, Path], ftype: str, tmp_path: Path
) -> None:
    model, matrix = tiny
    _same_file_as_llama(model, ftype, matrix, (), tmp_path)


def test_overrides_with_a_matrix_are_byte_identical_and_applied(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    model, matrix = tiny
    out = _same_file_as_llama(model, "IQ3_XXS", matrix, KEEP, tmp_path)
    types = {t.name: t.type_name for t in read_gguf_file(out).tensors}
    assert types["blk.2.attn_v.weight"] == "Q8_0" and types["blk.2.ffn_down.weight"] == "Q6_K"
    assert types["output.weight"] == "Q8_0" and types["blk.2.ffn_up.weight"] == "IQ3_XXS"
    meta = read_gguf_file(out).metadata
    assert meta["quantize.imatrix.file"] == "model.imatrix.gguf"  # the name only, no user folders
    assert meta["quantize.imatrix.chunks_count"] == 2


@pytest.fixture(scope="module")
def smol_matrix(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _matrix(smollm2_path, tmp_path_factory.mktemp("smol") / "m")


@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_S", "Q4_K_M", "Q2_0"])
def test_real_model_k_quants_with_a_matrix_are_byte_identical(
    smollm2_path: Path, smol_matrix: Path, ftype: str, tmp_path: Path
) -> None:
    _same_file_as_llama(
        smollm2_path, ftype, smol_matrix, ("attn_v=Q8_0",) if ftype == "Q2_K" else (), tmp_path
    )


def test_cancel_with_a_matrix_leaves_nothing(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """The values handed to the quantizer go with the output's temporary when a job is stopped."""
    import threading

    from app.core.errors import Cancelled

    model, matrix = tiny
    cancel = threading.Event()

    def stop(p: object) -> None:
        if p.fraction > 0.2:  # type: ignore[attr-defined]
            cancel.set()

    with pytest.raises(Cancelled):
        quantize(model, tmp_path / "o.gguf", to="IQ2_XS", imatrix=matrix, n_threads=1, on_progress=stop,
                 cancel=cancel)  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_a_type_that_needs_a_matrix_is_refused_before_any_work(
    tiny: tuple[Path, Path], tmp_path: Path
) -> None:
    model, _ = tiny
    with pytest.raises(ConversionError, match="needs an importance matrix") as err:
        quantize(model, tmp_path / "o.gguf", to="IQ2_XS")
    assert "tailorlm imatrix" in (err.value.hint or "")
    assert not list(tmp_path.iterdir())


def test_a_matrix_of_another_model_is_refused(smollm2_path: Path, tmp_path: Path) -> None:
    moe = write_synthetic_gguf(MOE_12, tmp_path / "moe.gguf")
    matrix = compute_imatrix(moe, tmp_path / "moe.imatrix.gguf", text=calibration_text(), n_ctx=128, n_chunks=1,
                             n_threads=2).path  # fmt: skip
    with pytest.raises(ConversionError, match=r"another model|no entry"):
        quantize(smollm2_path, tmp_path / "o.gguf", to="Q4_K_M", imatrix=matrix)
    assert not (tmp_path / "o.gguf").exists()


@pytest.mark.parametrize("spec", ["attn_v", "attn_v=Q9_9", "(=Q8_0", "=Q8_0"])
def test_a_bad_keep_is_one_clear_error(spec: str) -> None:
    with pytest.raises(ConversionError, match="--keep"):
        parse_keep([spec])


def test_cli_quantize_takes_the_matrix_and_overrides(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model, matrix = tiny
    out = tmp_path / "cli.gguf"
    res = tailorlm("quantize", str(model), "--to", "IQ2_XS", "--imatrix", str(matrix), "--keep", "attn_v=Q8_0",
                   "--out", str(out), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    types = {t.name: t.type_name for t in read_gguf_file(out).tensors}
    assert types["blk.0.attn_v.weight"] == "Q8_0" and types["blk.0.attn_q.weight"] == "IQ2_XS"
    refused = tailorlm("quantize", str(model), "--to", "IQ2_XS", "--out", str(tmp_path / "x.gguf"))
    assert refused.returncode != 0 and "importance matrix" in refused.stderr

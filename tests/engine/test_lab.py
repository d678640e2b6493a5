"""The quantization lab against llama.cpp itself. A small GGUF holds the first rows of SmolLM2's
(Q4_1) ``ffn_down`` matrices, one tensor per type; ``llama_model_quantize`` — the function behind
llama-quantize — writes every type ggml can make into one file per variant (with and without an
importance matrix, through per-tensor type overrides), and the lab's round trip of each tensor must
give the very bytes llama.cpp wrote, and the very float32 values ggml (and, where it can, the gguf
package's numpy port) dequantizes them to. Gemma 3's whole file does the same for K-quant sources
and for tensors the lab samples by rows.

The reference is made once per module; most of its time is ggml building the IQ1/IQ2 lookup
tables (5-25 s on 2 cores), which the in-process lab runs that follow reuse.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import psutil
import pytest

from app.core.errors import Cancelled, TailorError
from app.core.model.imatrix_file import Imatrix, ImatrixEntry, write_imatrix
from app.core.model.quant_lab import error_stats, sample_rows
from app.engine import ggml_quant, lab_child
from app.engine import protocol as P
from app.engine.errors import ProcessDied
from app.engine.lab import quantize_tensor

ROWS = 64  # real rows per tensor: every type's quantizer runs on 98k SmolLM2 weights
TYPES = ggml_quant.QUANTIZABLE
GEMMA_TYPES = ("Q4_K", "IQ4_XS", "IQ2_XXS")  # one ffn_down layer each


# --- the reference: llama.cpp's quantizer and its GGUF reader ---------------------------------


def _slice_model(src: Path, dst: Path, names: list[str], rows: int) -> Path:
    """``src``'s metadata and the first ``rows`` rows of the tensors ``names``, bytes unchanged."""
    reader = gguf.GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    w = gguf.GGUFWriter(str(dst), arch=arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        sub = field.types[-1] if len(field.types) > 1 else None
        w.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        if t.name in names:
            data = t.data[:rows]
            w.add_tensor(t.name, data, raw_shape=data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


def _llama_quantize(src: Path, dst: Path, types: dict[str, str], imatrix: dict[str, np.ndarray] | None,
                    *, ftype: str = "Q4_1", pure: bool = True) -> Path:  # fmt: skip
    """Quantize tensor → type as ``types`` says with ``llama_model_quantize``; every other tensor
    keeps its type (``pure`` to SmolLM2's own Q4_1, or the recipe of the ftype the file was made
    with), so llama.cpp copies it unchanged."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.pure, params.allow_requantize = pure, True
    keep: list[object] = []  # the C strings llama.cpp reads during the call
    overrides = (llama_cpp.llama_model_tensor_override * (len(types) + 1))()
    for i, (name, target) in enumerate(types.items()):
        pattern = ("^" + name.replace(".", r"\.") + "$").encode()
        keep.append(pattern)
        overrides[i].pattern, overrides[i].type = pattern, ggml_quant.TYPE_IDS[target]
    params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    if imatrix is not None:
        table = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            raw = name.encode()
            keep.append(raw)
            table[i].name, table[i].size = raw, values.size
            table[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        params.imatrix = ctypes.cast(table, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize failed with code {rc}"
    return dst


class _GgufInitParams(ctypes.Structure):
    _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]  # gguf.h struct gguf_init_params


def _llama_tensor(path: Path, name: str) -> tuple[int, bytes]:
    """(type id, bytes) of tensor ``name`` as llama.cpp's own GGUF reader (gguf.h) locates it."""
    from llama_cpp.llama_cpp import _lib as lib

    handle, tensor_id = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int64]
    signatures = {
        "gguf_init_from_file": (ctypes.c_void_p, [ctypes.c_char_p, _GgufInitParams]),
        "gguf_find_tensor": (ctypes.c_int64, [ctypes.c_void_p, ctypes.c_char_p]),
        "gguf_get_data_offset": (ctypes.c_size_t, handle),
        "gguf_get_tensor_offset": (ctypes.c_size_t, tensor_id),
        "gguf_get_tensor_size": (ctypes.c_size_t, tensor_id),
        "gguf_get_tensor_type": (ctypes.c_int, tensor_id),
        "gguf_free": (None, handle),
    }
    for fn, (restype, argtypes) in signatures.items():
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = restype, argtypes
    ctx = lib.gguf_init_from_file(str(path).encode(), _GgufInitParams(True, None))
    assert ctx, f"llama.cpp cannot read {path}"
    try:
        tid = lib.gguf_find_tensor(ctx, name.encode())
        assert tid >= 0, name
        start = lib.gguf_get_data_offset(ctx) + lib.gguf_get_tensor_offset(ctx, tid)
        size, type_id = lib.gguf_get_tensor_size(ctx, tid), lib.gguf_get_tensor_type(ctx, tid)
    finally:
        lib.gguf_free(ctx)
    with path.open("rb") as f:
        f.seek(start)
        return int(type_id), f.read(size)


@dataclass(frozen=True)
class Reference:
    source: Path  # real rows of the model, one tensor per type
    tensors: dict[str, str]  # type → tensor
    imatrix_file: Path
    importance: dict[str, np.ndarray]  # tensor → what llama.cpp was given
    plain: Path  # llama.cpp's output without an importance matrix (types that need one left out)
    weighted: Path  # with it


def _importance(n_cols: int, seed: int) -> np.ndarray:
    """Heavy-tailed positive importances, as real activation statistics are: a few columns dominate."""
    return np.random.default_rng(seed).lognormal(0.0, 1.5, n_cols).astype(np.float32)


def _reference(folder: Path, model: Path, types: tuple[str, ...], stem: str) -> Reference:
    layers = [t.name for t in gguf.GGUFReader(str(model)).tensors if t.name.endswith(".ffn_down.weight")]
    tensors = dict(zip(types, layers, strict=False))
    source = _slice_model(model, folder / f"{stem}.gguf", list(tensors.values()), ROWS)
    n_cols = next(t for t in gguf.GGUFReader(str(source)).tensors).shape[0]
    importance = {name: _importance(int(n_cols), i) for i, name in enumerate(tensors.values())}
    entries = {n: ImatrixEntry(v.reshape(1, -1), np.ones(1, dtype=np.int64)) for n, v in importance.items()}
    imatrix_file = write_imatrix(folder / f"{stem}.imatrix.gguf", Imatrix(entries, ("random",), 1, 512))
    plain_types = {tensors[t]: t for t in types if t not in ggml_quant.LLAMA_NEEDS_IMATRIX}
    plain = _llama_quantize(source, folder / f"{stem}-plain.gguf", plain_types, None)
    weighted = _llama_quantize(
        source, folder / f"{stem}-imatrix.gguf", {v: k for k, v in tensors.items()}, importance
    )
    return Reference(source, tensors, imatrix_file, importance, plain, weighted)


@pytest.fixture(scope="module")
def smol(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(tmp_path_factory.mktemp("lab"), smollm2_path, TYPES, "smollm2")


@pytest.fixture(scope="module")
def gemma(gemma3_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The whole Gemma 3 file (its K-quant tensors are the sources), a few ffn_down layers
    requantized by llama.cpp; everything else copied as the Q4_K_M recipe already has it."""
    folder = tmp_path_factory.mktemp("lab-gemma")
    tensors = {t: f"blk.{i}.ffn_down.weight" for i, t in enumerate(GEMMA_TYPES)}
    importance = {name: _importance(2048, 100 + i) for i, name in enumerate(tensors.values())}
    entries = {n: ImatrixEntry(v.reshape(1, -1), np.ones(1, dtype=np.int64)) for n, v in importance.items()}
    imatrix_file = write_imatrix(folder / "gemma3.imatrix.gguf", Imatrix(entries, ("random",), 1, 512))
    weighted = _llama_quantize(gemma3_path, folder / "gemma3-imatrix.gguf", {v: k for k, v in tensors.items()},
                               importance, ftype="Q4_K_M", pure=False)  # fmt: skip
    return Reference(gemma3_path, tensors, imatrix_file, importance, weighted, weighted)


def _numpy_dequantize(target: str, rows: np.ndarray, n_per_row: int) -> np.ndarray | None:
    """The gguf package's numpy port of ggml's dequantization; None where it has none."""
    try:
        qtype = gguf.GGMLQuantizationType[target]
        return gguf.quants.dequantize(rows, qtype).astype(np.float32).reshape(len(rows), n_per_row)
    except (KeyError, NotImplementedError):
        return None


def _rows(raw: bytes, n_rows: int, idx: np.ndarray) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint8).reshape(n_rows, -1)[idx]


def _check_against_llama(ref: Reference, target: str, weighted: bool) -> None:
    tensor = ref.tensors[target]
    spec = P.LabQuantize(path=str(ref.source), tensor=tensor, target=target,
                         imatrix=str(ref.imatrix_file) if weighted else None)  # fmt: skip
    report = lab_child.run(spec, lambda stage: None)
    type_id, raw = _llama_tensor(ref.weighted if weighted else ref.plain, tensor)
    assert type_id == ggml_quant.TYPE_IDS[target]
    n_per_row = report.shape[0]
    n_rows = report.n_total // n_per_row
    idx = sample_rows(n_rows, n_per_row, spec.max_weights)  # every row of a small tensor
    assert report.n_rows_sampled == len(idx) and report.n_sampled == len(idx) * n_per_row
    # the bytes llama.cpp wrote, and the float32 ggml reads them as
    rows = _rows(raw, n_rows, idx)
    assert report.quantized_sha256 == hashlib.sha256(rows.tobytes()).hexdigest(), (target, weighted)
    ggml_values = ggml_quant.to_float(target, rows, n_per_row)
    assert report.dequantized_sha256 == hashlib.sha256(ggml_values.astype("<f4").tobytes()).hexdigest()
    numpy_values = _numpy_dequantize(target, rows, n_per_row)
    if numpy_values is not None:
        assert np.array_equal(numpy_values, ggml_values), target
    # the numbers shown are those of llama.cpp's values against the source's
    _, source_raw = _llama_tensor(ref.source, tensor)
    before = _numpy_dequantize(report.source_type, _rows(source_raw, n_rows, idx), n_per_row)
    assert before is not None and report.stats == error_stats(before, ggml_values)


@pytest.mark.parametrize("target", TYPES)
def test_every_type_gives_the_bytes_llama_quantize_writes(smol: Reference, target: str) -> None:
    if target not in ggml_quant.LLAMA_NEEDS_IMATRIX:
        _check_against_llama(smol, target, weighted=False)
    _check_against_llama(smol, target, weighted=True)


def test_k_quant_sources_and_sampled_rows_match_llama_quantize(gemma: Reference) -> None:
    """Gemma 3's own Q6_K/Q4_K rows of 2048, as llama-quantize converts them; 1.3 M weights per
    tensor, so the lab reads evenly spaced rows — each row's bytes are the same as in the whole."""
    for target in GEMMA_TYPES:
        _check_against_llama(gemma, target, weighted=True)
    sources = {_llama_tensor(gemma.source, t)[0] for t in gemma.tensors.values()}
    assert sources <= {ggml_quant.TYPE_IDS["Q4_K"], ggml_quant.TYPE_IDS["Q6_K"]} and sources


def _lab_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "app.engine.lab_child" in " ".join(p.cmdline())]


def test_the_child_process_gives_the_same_bytes(smol: Reference) -> None:
    stages: list[str] = []
    for target, imatrix in (("Q4_K", None), ("IQ3_XXS", smol.imatrix_file)):
        report = quantize_tensor(smol.source, smol.tensors[target], target, imatrix_path=imatrix,
                                 on_progress=stages.append)  # fmt: skip
        _, raw = _llama_tensor(smol.weighted if imatrix else smol.plain, smol.tensors[target])
        assert report.quantized_sha256 == hashlib.sha256(raw).hexdigest()
        assert report.elapsed_s > 0 and len(report.linear) == 3 * 8
    assert any("Quantizing" in s and "IQ3_XXS" in s for s in stages)
    assert not _lab_children()


def test_what_the_importance_matrix_protects(smol: Reference) -> None:
    target = "Q4_K"
    spec = P.LabQuantize(path=str(smol.source), tensor=smol.tensors[target], target=target,
                         imatrix=str(smol.imatrix_file))  # fmt: skip
    imp = lab_child.run(spec, lambda stage: None).importance
    assert imp is not None and imp.type_uses_it and imp.n_top == 15  # 1 % of 1536 columns
    assert imp.top_columns[0] == int(np.argmax(smol.importance[smol.tensors[target]]))
    assert imp.plain_weighted_rmse is not None and imp.plain_top_rmse is not None
    # the matrix trades error on unimportant columns for less on the important ones
    assert imp.weighted_rmse < imp.plain_weighted_rmse and imp.top_rmse < imp.plain_top_rmse
    # Q8_0's quantizer takes no importance: the same bytes either way, and the report says so
    spec = P.LabQuantize(path=str(smol.source), tensor=smol.tensors["Q8_0"], target="Q8_0",
                         imatrix=str(smol.imatrix_file))  # fmt: skip
    q8 = lab_child.run(spec, lambda stage: None)
    assert q8.importance is not None and not q8.importance.type_uses_it
    assert q8.importance.weighted_rmse == q8.importance.plain_weighted_rmse
    assert "importance matrix" in q8.imatrix_note


def test_a_type_that_needs_an_importance_matrix_is_refused_in_words(
    smol: Reference, smollm2_path: Path
) -> None:
    for target, why in (("IQ2_XXS", "stops the program"), ("IQ1_M", "result would be garbage")):
        with pytest.raises(
            TailorError, match=f"{target} needs an importance matrix: without one .*{why}"
        ) as e:
            quantize_tensor(smol.source, smol.tensors[target], target)
        assert "importance-matrix file" in (e.value.hint or "")
    # a matrix without the tensor: llama-imatrix never sees the token embedding
    with pytest.raises(TailorError, match=r"no entry for token_embd\.weight"):
        quantize_tensor(smollm2_path, "token_embd.weight", "IQ2_XXS", imatrix_path=smol.imatrix_file,
                        max_weights=1 << 16)  # fmt: skip
    report = quantize_tensor(smollm2_path, "token_embd.weight", "Q4_0", imatrix_path=smol.imatrix_file,
                             max_weights=1 << 16)  # fmt: skip
    assert report.importance is None and "no entry for token_embd.weight" in report.imatrix_note
    assert not _lab_children()


def test_wrong_shapes_are_refused_before_ggml_sees_them(
    smol: Reference, smollm2_path: Path, tmp_path: Path
) -> None:
    with pytest.raises(TailorError, match="rows of 576 weights, not whole Q4_K blocks of 256"):
        quantize_tensor(smollm2_path, "blk.0.attn_q.weight", "Q4_K")
    other = {"blk.0.ffn_down.weight": ImatrixEntry(np.ones((1, 576), np.float32), np.ones(1, np.int64))}
    wrong = write_imatrix(tmp_path / "other.imatrix.gguf", Imatrix(other))
    with pytest.raises(TailorError, match="has 576 columns × 1 matrices; the tensor has rows of 1536") as e:
        quantize_tensor(smollm2_path, "blk.0.ffn_down.weight", "IQ4_XS", imatrix_path=wrong)
    assert "made for another model" in (e.value.hint or "")
    with pytest.raises(TailorError, match=r"no tensor 'blk\.99\.ffn_down\.weight'"):
        quantize_tensor(smollm2_path, "blk.99.ffn_down.weight", "Q4_K")
    with pytest.raises(TailorError, match="cannot quantize to Q8_K"):
        quantize_tensor(smollm2_path, "blk.0.ffn_down.weight", "Q8_K")


def test_a_big_tensor_is_sampled_by_whole_rows(smollm2_path: Path) -> None:
    report = quantize_tensor(smollm2_path, "token_embd.weight", "Q4_0", max_weights=1 << 18)
    assert report.n_total == 576 * 49152 and report.source_type == "Q8_0"
    assert report.n_sampled == 576 * report.n_rows_sampled <= 1 << 18
    assert report.bits_per_weight == 4.5 and report.source_bits_per_weight == 8.5
    assert int(report.hist.before.sum()) == int(report.hist.after.sum()) == report.n_sampled


def _start_in_thread(
    smol: Reference, cancel: threading.Event | None
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def work() -> None:
        try:  # IQ1_S: ggml spends seconds on its lookup tables first, time enough to interrupt
            quantize_tensor(
                smol.source, smol.tensors["IQ1_S"], "IQ1_S", imatrix_path=smol.imatrix_file, cancel=cancel
            )
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 10
    while not _lab_children() and time.monotonic() < deadline:
        time.sleep(0.02)
    return worker, errors


def test_a_killed_child_is_a_clear_process_died_message(smol: Reference) -> None:
    worker, errors = _start_in_thread(smol, None)
    _lab_children()[0].kill()  # what the kernel's out-of-memory killer would do
    worker.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], ProcessDied)
    assert f"quantizing {smol.tensors['IQ1_S']} to IQ1_S ended unexpectedly" in str(errors[0])
    assert "killed" in str(errors[0])


def test_cancel_kills_the_child(smol: Reference) -> None:
    cancel = threading.Event()
    worker, errors = _start_in_thread(smol, cancel)
    cancel.set()
    worker.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert not _lab_children()


def test_the_type_table_is_ggmls_own() -> None:
    for name in TYPES:
        t = ggml_quant.ggml_type(name)
        assert t.type_id == ggml_quant.TYPE_IDS[name] and t.block_size >= 1
        assert ggml_quant.ggml_requires_imatrix(name) == (name in ggml_quant.GGML_NEEDS_IMATRIX)
    bits = [ggml_quant.ggml_type(n).bits_per_weight for n in TYPES]
    assert bits == sorted(bits, reverse=True)  # the panel lists them most precise first
    assert ggml_quant.GGML_NEEDS_IMATRIX <= ggml_quant.LLAMA_NEEDS_IMATRIX <= set(TYPES)

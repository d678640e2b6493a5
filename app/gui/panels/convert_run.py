"""The Convert panel's one long job, without Qt: ``app.engine.build.build_gguf``, with an importance
matrix made first when the user asked for one now. From a GGUF the matrix is measured on the
source itself; from a checkpoint folder the converter first writes the 16-bit GGUF that
build_gguf would write anyway, the matrix is measured on it, then it is quantized and deleted.

Progress is build_gguf's ``BuildProgress``, with an "imatrix" stage between "convert" and
"quantize". A cancel or a failure keeps nothing: not the output, not a matrix made for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.gui.panels.convert_imatrix import MatrixChoice, made_matrix_path, make_matrix


@dataclass(frozen=True)
class ConvertRequest:
    source: Path  # a checkpoint folder or a GGUF
    to: str
    out: Path
    matrix: MatrixChoice = field(default_factory=MatrixChoice)
    keep: tuple[tuple[str, str], ...] = ()
    intermediate_type: str = "F16"  # a checkpoint's 16-bit type, when a matrix is made from it


@dataclass(frozen=True)
class Converted:
    result: Any  # app.engine.build.BuildResult
    imatrix: Path | None  # the matrix it was quantized with
    made_imatrix: bool  # made by this run (beside the output)
    tensor_types: dict[str, int]  # ggml type → how many tensors of the output have it


def run_convert(
    req: ConvertRequest,
    *,
    on_progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> Converted:
    from app.engine.build import BuildProgress, build_gguf

    report = on_progress or (lambda p: None)
    if req.matrix.kind != "make":
        matrix = req.matrix.path if req.matrix.kind == "file" else None
        result = build_gguf(req.source, req.to, out=req.out, imatrix=matrix, keep=req.keep,
                            on_progress=report, cancel=cancel)  # fmt: skip
        return Converted(result, matrix, False, _types(result.path))

    def matrix_progress(p: Any) -> None:
        detail = f"chunk {p.chunks_done} of {p.n_chunks}, {p.tok_s:,.0f} tokens/s"
        report(BuildProgress("imatrix", p.chunks_done / max(1, p.n_chunks), detail))

    matrix_out = made_matrix_path(req.out)
    from_folder = req.source.is_dir()
    gguf = req.out.with_name(f".{req.out.stem}.{req.intermediate_type}.gguf") if from_folder else req.source
    done, timings = False, {}
    try:
        if from_folder:
            gguf.unlink(missing_ok=True)  # our own hidden name: a leftover of a killed run
            timings["convert"] = build_gguf(req.source, req.intermediate_type, out=gguf, register=False,
                                            smoke_test=False, on_progress=report, cancel=cancel).timings_s["convert"]  # fmt: skip
        t0 = time.monotonic()
        make_matrix(gguf, matrix_out, req.matrix, on_progress=matrix_progress, cancel=cancel)
        timings["imatrix"] = time.monotonic() - t0
        result = build_gguf(gguf, req.to, out=req.out, imatrix=matrix_out, keep=req.keep, register=not from_folder,
                            on_progress=report, cancel=cancel)  # fmt: skip
        result = replace(result, timings_s={**timings, **result.timings_s})
        if from_folder:
            result = replace(result, library_id=_register(req, matrix_out))
        done = True
    finally:
        if from_folder:
            gguf.unlink(missing_ok=True)
        if not done:
            matrix_out.unlink(missing_ok=True)
    return Converted(result, matrix_out, True, _types(result.path))


def _register(req: ConvertRequest, matrix: Path) -> str:
    """As build_gguf registers its output, but naming the checkpoint folder it came from rather
    than the intermediate GGUF it was quantized from (deleted by now)."""
    from app.core.library.registry import Library

    provenance: dict[str, Any] = {"source": str(req.source), "type": req.to, "via": "convert",
                                  "imatrix": matrix.name}  # fmt: skip
    if req.keep:
        provenance["keep"] = [f"{p}={t}" for p, t in req.keep]
    return Library().add([req.out], origin="tailorlm", owned=True, provenance=provenance).id


def _types(path: Path) -> dict[str, int]:
    from app.core.model.gguf_header import read_gguf_file
    from app.core.model.quant_recipe import type_histogram

    return type_histogram(read_gguf_file(path).tensors)

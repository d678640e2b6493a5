"""The quantization lab: any tensor of a GGUF through any type ggml can quantize, and back.

The work runs in a child (:mod:`app.engine.lab_child`) through :func:`app.engine.child.job`:
ggml aborts the process on inputs it rejects, and the IQ1/IQ2 types spend seconds building lookup
tables; a crash costs this call, never the window, and a cancel is a kill. What comes back is a
:class:`~app.core.model.quant_lab.LabReport` — histograms and numbers, a few kilobytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from app.core.errors import ModelNotFoundError, TailorError
from app.core.model.quant_lab import MAX_SAMPLE_WEIGHTS, LabReport
from app.engine import protocol as P
from app.engine.child import job
from app.engine.errors import from_failure
from app.engine.ggml_quant import GGML_NEEDS_IMATRIX, LLAMA_NEEDS_IMATRIX, QUANTIZABLE, SLOW_INIT

__all__ = [
    "GGML_NEEDS_IMATRIX",
    "LLAMA_NEEDS_IMATRIX",
    "QUANTIZABLE",
    "SLOW_INIT",
    "LabReport",
    "quantize_tensor",
]


def quantize_tensor(
    path: str | Path,
    tensor: str,
    target: str,
    *,
    imatrix_path: str | Path | None = None,
    max_weights: int = MAX_SAMPLE_WEIGHTS,
    n_threads: int = 0,
    on_progress: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> LabReport:
    """Round-trip ``tensor`` of the GGUF at ``path`` through ggml's ``target`` type in a child.

    ``imatrix_path``: an importance-matrix file (GGUF or legacy .dat), used as llama-quantize
    uses it. ``on_progress`` gets what the child is doing, in words; setting ``cancel`` kills it
    and raises ``Cancelled``. Raises ``TailorError`` (a type that needs an importance matrix
    without one, rows that are not whole blocks …) or, when the child dies, ``ProcessDied``.
    """
    for file in (path, imatrix_path):
        if file is not None and not Path(file).is_file():
            raise ModelNotFoundError(f"{file} is not a file.")
    if target not in QUANTIZABLE:
        raise TailorError(
            f"ggml cannot quantize to {target}.", hint=f"Choose one of {', '.join(QUANTIZABLE)}."
        )
    t0 = time.perf_counter()
    request = P.LabQuantize(path=str(path), tensor=tensor, target=target, max_weights=max_weights,
                            imatrix=str(imatrix_path) if imatrix_path is not None else None,
                            n_threads=n_threads)  # fmt: skip
    for msg in job("app.engine.lab_child", request, result=P.LabDone, cancel=cancel,
                   what=f"The ggml process quantizing {tensor} to {target}", cancelled_message="Stopped.",
                   hint="Nothing else was affected: try another type or tensor."):  # fmt: skip
        if isinstance(msg, P.LabProgress):
            if on_progress is not None:
                on_progress(msg.stage)
        elif isinstance(msg, P.LabDone):
            return replace(LabReport.from_dict(msg.report), elapsed_s=time.perf_counter() - t0)
        elif isinstance(msg, P.Failed):
            raise from_failure(msg)
    raise AssertionError("unreachable: job() ends with a result, an error or the child's death")

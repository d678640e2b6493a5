"""An importance matrix for a model, computed here from a calibration text: llama.cpp's answer to
GPTQ/AWQ-style calibration. The quantizer then keeps the columns that see large activations more
precise, which is what makes the IQ types and 2–3-bit K-quants usable.

The work runs in a child (:mod:`app.engine.imatrix_child`) through :func:`app.engine.child.job`: a
crash or an out-of-memory kill costs only this call, a cancel is a kill, and the file appears under
its name only when it is complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from app.core.errors import ModelNotFoundError, TailorError
from app.engine import protocol as P
from app.engine.child import job
from app.engine.errors import from_failure

BUILTIN_TEXT_NAME = "tailorlm-calibration-v1"  # what the file's imatrix.datasets says for ours
MIN_CTX = 64


def calibration_text() -> str:
    """The built-in text: ~8,000 words of original prose, dialogue, chat turns, code in a dozen
    languages, math, tables and twenty natural languages (kept apart from the quality check's text,
    so a matrix is never judged on what it was computed from)."""
    return resources.files("app.core.build").joinpath("calibration_text.txt").read_text(encoding="utf-8")


def default_imatrix_path(model: Path) -> Path:
    """Where a matrix made for ``model`` from the built-in text is kept and found again (one per
    model file: ``tailorlm ladder --imatrix auto`` and the app's panels reuse it)."""
    from app.core import paths

    return paths.data_dir() / "imatrix" / f"{Path(model).stem}.imatrix.gguf"


@dataclass(frozen=True)
class ImatrixResult:
    path: Path
    n_chunks: int
    n_tokens: int
    n_entries: int
    eval_s: float
    elapsed_s: float
    dataset: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "path": str(self.path),
            "tok_s": self.n_tokens / self.eval_s if self.eval_s else 0.0,
        }


def compute_imatrix(
    model: Path,
    out: Path,
    *,
    text: str | None = None,
    text_name: str | None = None,
    n_ctx: int = 512,
    n_chunks: int = 0,
    n_threads: int = 0,
    n_gpu_layers: int = 0,
    on_progress: Callable[[P.ImatrixProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ImatrixResult:
    """Compute ``model``'s importance matrix on ``text`` (default: the built-in calibration text)
    and write it to ``out`` in llama-imatrix's GGUF layout. ``n_chunks`` 0 = every whole chunk."""
    from app.core.model.source import model_from_gguf

    model, out = Path(model), Path(out).expanduser()
    if not model.is_file():
        raise ModelNotFoundError(f"{model} is not a file.", hint="Give the path of a .gguf model.")
    model_from_gguf(model)  # a truncated or corrupt file fails here, with a clear message
    if n_ctx < MIN_CTX:
        raise TailorError(f"Chunks of {n_ctx} tokens are too short.", hint="Use 512, as llama-imatrix does.")
    if out.resolve() == model.resolve():
        raise TailorError("The importance matrix would overwrite the model.", hint="Choose another --out.")
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset = text_name or BUILTIN_TEXT_NAME
    tmp = out.with_name(f".{out.name}.computing")
    leftovers = (tmp, tmp.with_name(f".{tmp.name}.writing"))
    request = P.ComputeImatrix(model=str(model), output=str(tmp), text=calibration_text() if text is None else text,
                               dataset=dataset, n_ctx=n_ctx, n_chunks=n_chunks, n_threads=n_threads,
                               n_gpu_layers=n_gpu_layers)  # fmt: skip
    t0 = time.perf_counter()
    try:
        for msg in job("app.engine.imatrix_child", request, result=P.ImatrixDone, cancel=cancel,
                       what="The llama.cpp process of the importance matrix", hint="Nothing was kept.",
                       cancelled_message="Stopped; nothing was kept."):  # fmt: skip
            if isinstance(msg, P.ImatrixProgress):
                if on_progress is not None:
                    on_progress(msg)
            elif isinstance(msg, P.Failed):
                raise from_failure(msg)
            elif isinstance(msg, P.ImatrixDone):
                tmp.replace(out)
                return ImatrixResult(out, msg.n_chunks, msg.n_tokens, msg.n_entries, msg.eval_s,
                                     time.perf_counter() - t0, dataset)  # fmt: skip
    finally:
        for p in leftovers:
            p.unlink(missing_ok=True)
    raise AssertionError("unreachable: job() ends with a result, an error or the child's death")

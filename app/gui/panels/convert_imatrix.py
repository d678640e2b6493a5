"""The importance-matrix choice the Convert and Quality ladder panels share — none, a file, or one
made now from the built-in calibration text — and the plain work behind "make one now". No Qt:
the picker that shows it is :mod:`app.gui.panels.convert_imatrix_picker`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.model.imatrix_file import ImatrixKV
    from app.core.model.info import ModelInfo

DEFAULT_CHUNK_TOKENS = 512  # llama-imatrix's -c default, and compute_imatrix's
# For the time estimate only: English BPE text runs ~4 characters a token (OpenAI's tokenizer
# guide; our calibration text is mixed, so this is rough).
CHARS_PER_TOKEN = 4.0
# Our measurement: SmolLM2-135M (Q4_1) through compute_imatrix, 1,024 tokens in 20.2 s on 2 busy
# cores (the eval callback copies every activation to Python): ~50 tok/s × 135 M parameters.
IMATRIX_PARAM_TOKENS_S = 50 * 135e6


@dataclass(frozen=True)
class MatrixChoice:
    """``kind``: "none", "file" (``path``) or "make" (from the built-in text, ``n_chunks`` chunks of
    ``n_ctx`` tokens — llama-imatrix's ``--chunks`` and ``-c``; 0 chunks: every whole one)."""

    kind: str = "none"
    path: Path | None = None
    n_chunks: int = 0
    n_ctx: int = DEFAULT_CHUNK_TOKENS

    @property
    def chosen(self) -> bool:
        return self.kind != "none"


def made_matrix_path(out: Path) -> Path:
    """Where "make one now" saves the Convert panel's matrix: beside the output, ``<stem>.imatrix.gguf``."""
    return out.with_name(f"{out.stem}.imatrix.gguf")


def ladder_matrix_path(source: Path) -> Path:
    """Where the ladder's matrix goes: where ``tailorlm ladder --imatrix auto`` puts it."""
    from app.engine.imatrix import default_imatrix_path

    return default_imatrix_path(source)


def candidates(model: Path, *also: Path) -> list[Path]:
    """Matrices worth offering for ``model``: those beside it (as publishers ship them), then any
    of ``also`` that exist (one this app made before)."""
    from app.gui.panels.quantviz_compute import imatrix_candidates

    found = list(imatrix_candidates(model))
    return found + [p for p in also if p.is_file() and p not in found]


@functools.cache
def _calibration_chars() -> int:
    from app.engine.imatrix import calibration_text

    return len(calibration_text())


def chunks_made(choice: MatrixChoice) -> int:
    """How many chunks "make one now" will use (the built-in text's length, roughly, when all)."""
    whole = max(1, int(_calibration_chars() / CHARS_PER_TOKEN) // choice.n_ctx)
    return min(whole, choice.n_chunks) if choice.n_chunks > 0 else whole


def imatrix_seconds(model: ModelInfo, choice: MatrixChoice) -> float:
    """Rough seconds to make the matrix on a 2-core laptop-class CPU (0 unless "make")."""
    if choice.kind != "make":
        return 0.0
    return chunks_made(choice) * choice.n_ctx * max(1, model.n_params) / IMATRIX_PARAM_TOKENS_S


def matrix_kv(choice: MatrixChoice, made_at: Path) -> ImatrixKV | None:
    """What the quantizer will write about the matrix into the output (it sizes the header): read
    from the file, or foretold for one made now at ``made_at``. Reads a file: off the GUI thread."""
    from app.core.model.imatrix_file import ImatrixKV, imatrix_kv, read_imatrix
    from app.engine.imatrix import BUILTIN_TEXT_NAME

    if choice.kind == "file" and choice.path is not None:
        return imatrix_kv(choice.path, read_imatrix(choice.path))
    if choice.kind == "make":
        # the counts are fixed-width integers: only the names change the size, and they are known
        return ImatrixKV(file=made_at.name, dataset=BUILTIN_TEXT_NAME, entries=1, chunks=chunks_made(choice))
    return None


def make_matrix(
    model: Path,
    out: Path,
    choice: MatrixChoice,
    *,
    n_threads: int = 0,
    on_progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Compute ``model``'s matrix from the built-in text into ``out``; ``on_progress`` gets the
    engine's ``ImatrixProgress``. The file appears only when complete."""
    from app.engine.imatrix import compute_imatrix

    return compute_imatrix(model, out, n_ctx=choice.n_ctx, n_chunks=choice.n_chunks, n_threads=n_threads,
                           on_progress=on_progress, cancel=cancel).path  # fmt: skip

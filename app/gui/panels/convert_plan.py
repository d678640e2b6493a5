"""What the Convert panel knows before anything runs, without Qt: the source (a checkpoint folder or
a GGUF), the tensors to keep at higher precision, the predicted output — its size, its time, its
path — and, when Convert cannot run, the reason in words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.gui.panels.convert_imatrix import MatrixChoice, imatrix_seconds, made_matrix_path, matrix_kv

if TYPE_CHECKING:
    from app.core.model.info import ModelInfo

# A rough time model from tests/bench/convert_speed.py (README: SmolLM2-135M as a 538 MB F32
# checkpoint on 2 cores): the converter spends ~4 s starting torch, then ~115 MB/s of source
# (8.7 s in all); quantizing F16 runs ~70 MB/s of F16 input (270.9 MB → Q4_K_M in 3.8 s); the
# check loads the result and writes 6 tokens (our measurement: 3.6 s for SmolLM2 Q8_0, 2 busy cores).
CONVERTER_START_S = 4.0
CONVERT_SOURCE_BYTES_S = 115e6
QUANTIZE_F16_BYTES_S = 70e6
CHECK_S = 3.0
FLOAT_TARGETS = ("F32", "F16", "BF16")  # nothing is rounded: nothing to calibrate or keep
KEEP_TYPE = "Q8_0"  # the common mixed-precision recipe keeps these tensors at 8 bits


@dataclass(frozen=True)
class KeepPreset:
    """A tensor group the usual recipe keeps at :data:`KEEP_TYPE`. The pattern is searched in tensor
    names (llama-quantize ``--tensor-type``): anchored, since a bare ``output`` would also catch every
    ``attn_output``."""

    key: str
    pattern: str
    label: str


KEEP_PRESETS = (
    KeepPreset("output", r"^output\.weight$", "output layer"),
    KeepPreset("token_embd", r"^token_embd\.weight$", "token embeddings"),
    KeepPreset("attn_v", r"attn_v\.weight$", "attention values (attn_v)"),
)


def keep_pairs(checked: Iterable[str], extra: str = "") -> tuple[tuple[str, str], ...]:
    """The presets ticked (by key) and the free-text ``PATTERN=TYPE`` items (separated by spaces or
    commas) as the quantizer's (pattern, type) pairs; raises ``ConversionError`` naming a bad item."""
    from app.engine.quantize import parse_keep

    ticked = set(checked)
    specs = [f"{p.pattern}={KEEP_TYPE}" for p in KEEP_PRESETS if p.key in ticked]
    specs += [item.strip(",") for item in extra.split() if item.strip(",")]
    return parse_keep(specs)


def presets_present(model: ModelInfo) -> dict[str, bool]:
    """Which presets match a tensor of ``model`` (a model with tied embeddings has no output layer)."""
    return {p.key: any(re.search(p.pattern, t.name) for t in model.tensors) for p in KEEP_PRESETS}


# --- the source -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    kind: str  # "checkpoint" (a Hugging Face folder) | "gguf"
    architecture: str
    model: ModelInfo
    source_bytes: int

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"

    def facts(self) -> str:
        """One line: architecture, parameters, precision, size."""
        from app.core.units import format_bytes

        m = self.model
        params = f"{m.n_params / 1e9:.2f} B parameters" if m.n_params else "parameters unknown"
        what = "GGUF" if self.is_gguf else "safetensors"
        return f"{self.architecture}, {params}, {m.file_type or '?'} weights, {format_bytes(self.source_bytes)} of {what}"


def inspect_source(path: Path) -> Source:
    """Check a checkpoint folder (config, tokenizer, safetensors headers, an architecture the
    converter knows) or read a GGUF's header; one clear error for what would fail later."""
    from app.core.build.convert import check_checkpoint, converter_ready, supported_architectures
    from app.core.errors import ModelReadError
    from app.core.model.source import model_from_gguf

    path = path.expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelReadError(f"{path.name} is not a GGUF file.",
                                 hint="Choose a .gguf model or a Hugging Face checkpoint folder.")  # fmt: skip
        model = model_from_gguf(path)
        return Source(path, "gguf", model.architecture, model, path.stat().st_size)
    known = (supported_architectures() or None) if converter_ready() else None
    ckpt = check_checkpoint(path, known=known)
    return Source(ckpt.folder, "checkpoint", ckpt.architecture, ckpt.model, ckpt.source_bytes)


def intermediate_type(source: Source) -> str:
    """The converter's output before quantizing: the checkpoint's own 16-bit type (no rounding)."""
    return "BF16" if source.model.file_type == "BF16" else "F16"


def options_apply(source: Source, to: str) -> str:
    """Why a matrix and kept tensors mean nothing for ``to`` from ``source``; "" when they apply."""
    from app.core.build.convert import OUTTYPES

    if to in FLOAT_TARGETS:
        return f"{to} rounds nothing: there is nothing to calibrate or keep."
    if not source.is_gguf and to in OUTTYPES:
        return f"The converter writes {to} itself: a matrix or kept tensors would have nothing to do."
    return ""


# --- the prediction ---------------------------------------------------------------------------


def stage_seconds(
    source_bytes: int, f16_bytes: int, *, direct: bool, from_gguf: bool = False, imatrix_s: float = 0.0
) -> dict[str, float]:
    """Each stage's seconds on a 2-core laptop-class CPU; direct: the converter writes the type, so
    there is no quantize stage; from_gguf: no converter. They weigh the stages on the progress bar."""
    return {
        "convert": 0.0 if from_gguf else CONVERTER_START_S + source_bytes / CONVERT_SOURCE_BYTES_S,
        "imatrix": imatrix_s,
        "quantize": 0.0 if direct else f16_bytes / QUANTIZE_F16_BYTES_S,
        "check": CHECK_S,
    }


def rough_seconds(source_bytes: int, f16_bytes: int, *, direct: bool) -> float:
    """Seconds for a checkpoint's whole conversion (see :func:`stage_seconds`)."""
    return sum(stage_seconds(source_bytes, f16_bytes, direct=direct).values())


def source_stage_seconds(source: Source, to: str, choice: MatrixChoice) -> dict[str, float]:
    from app.core.build.convert import OUTTYPES, predicted_bytes

    direct = not source.is_gguf and to in OUTTYPES
    return stage_seconds(source.source_bytes, predicted_bytes(source.model, "F16"), direct=direct,
                         from_gguf=source.is_gguf, imatrix_s=imatrix_seconds(source.model, choice))  # fmt: skip


@dataclass(frozen=True)
class Prediction:
    size_bytes: int
    seconds: float
    out: Path
    exists: bool
    needs_matrix: tuple[str, ...]  # tensors llama.cpp refuses to make without a matrix; () if none


def predict(source: Source, to: str, choice: MatrixChoice, keep: Sequence[tuple[str, str]]) -> Prediction:
    """The output of converting ``source`` to ``to``: reads a chosen matrix's header, so off the GUI
    thread. ``choice`` and ``keep`` are ignored where they do not apply (:func:`options_apply`)."""
    from app.core.build.convert import predicted_bytes
    from app.core.model.quant_recipe import requires_imatrix
    from app.engine.build import default_output

    out = default_output(source.path, to)
    if options_apply(source, to):
        choice, keep = MatrixChoice(), ()
    kv = matrix_kv(choice, made_matrix_path(out))
    size = predicted_bytes(source.model, to, imatrix=kv, overrides=keep)
    needing = () if choice.chosen or to in FLOAT_TARGETS else tuple(requires_imatrix(source.model, to, keep))
    seconds = sum(source_stage_seconds(source, to, choice).values())
    return Prediction(size, seconds, out, out.exists(), needing)


def needs_matrix_reason(to: str, needing: Sequence[str]) -> str:
    """Why Convert waits for a matrix, in words; "" when it does not."""
    if not needing:
        return ""
    n = len(needing)
    return (f"{to} needs an importance matrix: llama.cpp refuses to make {n} tensor{'s' if n > 1 else ''} of this "
            f"model without one (e.g. {needing[0]}). Choose a file under Importance matrix, or make one now "
            "from the built-in text.")  # fmt: skip

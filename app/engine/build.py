"""Make the GGUF a user asked for: convert a Hugging Face checkpoint and/or quantize a GGUF, check
that the result loads and writes a few tokens, and register it in the library with where it
came from. One function with one progress callback, for the CLI and the GUI's worker alike.

Lives beside the engine (not in ``app.core``) because the smoke test runs the model process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core import paths
from app.core.build.convert import OUTTYPES, check_checkpoint, convert_checkpoint, predicted_bytes
from app.core.errors import ConversionError, TailorError
from app.core.hub.download import check_disk_space
from app.engine.quantize import NEEDS_IMATRIX, QUANT_TYPES, quantize


@dataclass(frozen=True)
class BuildProgress:
    stage: str  # "convert" | "quantize" | "check"
    fraction: float  # of the stage
    detail: str = ""


@dataclass
class BuildResult:
    path: Path
    file_type: str
    size_bytes: int
    library_id: str | None
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sample: str = ""  # the few tokens the smoke test generated

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "file_type": self.file_type, "size_bytes": self.size_bytes,
                "library_id": self.library_id, "timings_s": self.timings_s, "warnings": self.warnings,
                "sample": self.sample}  # fmt: skip


def default_output(source: Path, to: str) -> Path:
    """``<data>/models/<name>-<TYPE>.gguf``: the name without the source's own type suffix."""
    stem = source.name if source.is_dir() else source.stem
    stem = re.sub(r"[-_.](?:F32|F16|BF16|Q\d\w*|IQ\d\w*)$", "", stem, flags=re.IGNORECASE)
    return paths.data_dir() / "models" / f"{stem}-{to.upper()}.gguf"


def build_gguf(
    source: Path,
    to: str,
    *,
    out: Path | None = None,
    n_threads: int = 0,
    on_progress: Callable[[BuildProgress], None] | None = None,
    cancel: threading.Event | None = None,
    register: bool = True,
    smoke_test: bool = True,
    imatrix: Path | None = None,
    keep: Sequence[tuple[str, str]] = (),
) -> BuildResult:
    """``source`` (HF checkpoint folder or GGUF) → a GGUF at ``to``; checked, then registered.
    ``imatrix`` and ``keep`` go to the quantizer (:func:`app.engine.quantize.quantize`)."""
    to = to.upper()
    if to not in QUANT_TYPES:
        raise ConversionError(
            f"{to} is not a type TailorLM can make.", hint="Choose one of: " + ", ".join(QUANT_TYPES)
        )
    if (imatrix is not None or keep) and source.is_dir() and to in OUTTYPES:
        raise ConversionError(f"The converter writes {to} itself: an importance matrix or --keep has nothing to do.",
                              hint="Use them with a quantized type, e.g. --to Q4_K_M or IQ3_XXS.")  # fmt: skip
    if source.is_dir() and to in NEEDS_IMATRIX and imatrix is None:  # before an hour of converting
        raise ConversionError(f"{to} needs an importance matrix.",
                              hint="Convert to F16 or Q8_0 first, make one with `tailorlm imatrix`, "
                                   "then quantize with --imatrix.")  # fmt: skip
    source = source.expanduser()
    out = (out or default_output(source, to)).expanduser()
    if out.exists():
        raise ConversionError(
            f"{out} already exists.", hint="Choose another --out, or remove the file first."
        )
    report = on_progress or (lambda p: None)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    intermediate: Path | None = None
    try:
        if source.is_dir():
            direct = to in OUTTYPES
            first = to if direct else _intermediate_type(source)
            target = out if direct else out.with_name(f".{out.stem}.{first}.gguf")
            intermediate = None if direct else target
            if not direct:  # room for the 16-bit intermediate and the result, checked before either
                model = check_checkpoint(source).model
                out.parent.mkdir(parents=True, exist_ok=True)
                check_disk_space(out.parent, predicted_bytes(model, first) + predicted_bytes(model, to))
            t0 = time.monotonic()
            convert_checkpoint(source, target, to=first, cancel=cancel,
                               on_progress=lambda p: report(BuildProgress("convert", p.fraction, p.stage)))  # fmt: skip
            timings["convert"] = time.monotonic() - t0
            gguf_in = target
        else:
            gguf_in = source
        if gguf_in != out:
            t0 = time.monotonic()
            _, warns = quantize(gguf_in, out, to=to, n_threads=n_threads, cancel=cancel, imatrix=imatrix, keep=keep,
                                on_progress=lambda p: report(BuildProgress("quantize", p.fraction, p.tensor)))  # fmt: skip
            timings["quantize"] = time.monotonic() - t0
            if source.is_file():
                warnings += warns
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        if intermediate is not None:
            intermediate.unlink(missing_ok=True)
    sample = ""
    if smoke_test:
        report(BuildProgress("check", 0.0, "loading"))
        t0 = time.monotonic()
        try:
            sample = _smoke_test(out, n_threads)
        except TailorError as exc:
            out.unlink(missing_ok=True)
            raise ConversionError(
                f"The new {to} file does not run: {exc}", hint="Nothing was kept."
            ) from None
        timings["check"] = time.monotonic() - t0
        report(BuildProgress("check", 1.0, sample))
    library_id = None
    if register:
        from app.core.library.registry import Library

        entry = Library().add([out], origin="tailorlm", owned=True,
                              provenance={"source": str(source), "type": to,
                                          "via": "convert" if source.is_dir() else "quantize",
                                          **({"imatrix": imatrix.name} if imatrix is not None else {}),
                                          **({"keep": [f"{p}={t}" for p, t in keep]} if keep else {})})  # fmt: skip
        library_id = entry.id
    return BuildResult(out, to, out.stat().st_size, library_id, timings, warnings, sample)


def _intermediate_type(folder: Path) -> str:
    """The converter's output before quantizing: the checkpoint's own 16-bit type (no rounding)."""
    from app.core.model.source import model_from_checkpoint

    return "BF16" if model_from_checkpoint(folder).file_type == "BF16" else "F16"


def _smoke_test(path: Path, n_threads: int) -> str:
    """Load the file in the model process and let it write a few tokens."""
    from app.engine import protocol as P
    from app.engine.client import EngineClient

    with EngineClient() as engine:
        engine.load(P.Load(model_path=str(path), n_ctx=256, n_threads=n_threads))
        events = list(engine.generate("The capital of France is", P.Sampling(temperature=0, max_tokens=6)))
    return "".join(e.text for e in events if isinstance(e, P.TokenChunk))

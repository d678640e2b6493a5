"""GGUF file names on the Hub → quantization type and split parts.

Conventions seen across GGUF repos (llama.cpp's ``gguf-split``, bartowski, unsloth, Qwen):
``<Model>-<QUANT>.gguf``, lower or upper case, ``.`` or ``-`` before the type, an optional
``<QUANT>/`` folder, and split files ``<name>-00001-of-00003.gguf`` that make one model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Longest names first so "Q4_K_M" wins over "Q4_K" and "IQ4_XS" over "Q4".
_QUANTS = sorted(
    ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1",
     "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K_S", "Q2_K", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XS",
     "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ1_0", "TQ2_0", "MXFP4"],
    key=len, reverse=True,
)  # fmt: skip
_QUANT_RE = re.compile(r"(?:^|[-._/])(" + "|".join(_QUANTS) + r")(?=$|[-._/])", re.IGNORECASE)
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class GGUFFile:
    """One downloadable model: a single file, or all parts of a split one."""

    paths: tuple[str, ...]  # in part order; load the first
    quant: str | None  # "Q4_K_M", … or None when the name does not say
    size_bytes: int | None = None

    @property
    def first(self) -> str:
        return self.paths[0]


def quant_from_name(path: str) -> str | None:
    """``Llama-3.2-1B-Instruct-Q4_K_M.gguf`` → ``Q4_K_M``; the last match wins (folder or name)."""
    name = _SPLIT_RE.sub(".gguf", path)
    name = re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    matches = _QUANT_RE.findall(name)
    return matches[-1].upper() if matches else None


def group_gguf_files(paths: Iterable[tuple[str, int | None]]) -> list[GGUFFile]:
    """(path, size) pairs of a repo → models; split parts joined, incomplete splits dropped.

    Multimodal projector files (``mmproj-*.gguf``) are not models and are left out.
    """
    singles: list[GGUFFile] = []
    splits: dict[str, dict[int, tuple[str, int | None]]] = {}
    counts: dict[str, int] = {}
    for path, size in paths:
        if not path.lower().endswith(".gguf") or path.rsplit("/", 1)[-1].lower().startswith("mmproj"):
            continue
        m = _SPLIT_RE.search(path)
        if m:
            stem = path[: m.start()]
            splits.setdefault(stem, {})[int(m.group(1))] = (path, size)
            counts[stem] = int(m.group(2))
        else:
            singles.append(GGUFFile((path,), quant_from_name(path), size))
    for stem, parts in splits.items():
        n = counts[stem]
        if sorted(parts) != list(range(1, n + 1)):
            continue  # a part is missing on the Hub: not downloadable as a model
        ordered = [parts[i] for i in range(1, n + 1)]
        sizes = [s for _, s in ordered]
        total = sum(s for s in sizes if s is not None) if all(s is not None for s in sizes) else None
        singles.append(GGUFFile(tuple(p for p, _ in ordered), quant_from_name(ordered[0][0]), total))
    return sorted(singles, key=lambda f: (f.size_bytes or 0, f.first))

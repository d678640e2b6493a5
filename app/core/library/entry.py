"""One model in the library: where its files are, where they came from, and what its header says."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Where a model came from: made or downloaded by TailorLM, found in another tool's folder, in a
# folder the user named, or a file the user picked.
ORIGINS = ("tailorlm", "hf_cache", "lmstudio", "ollama", "folder", "file")


@dataclass(frozen=True)
class LibraryModel:
    """One model in the library: a GGUF file, or every part of a split one."""

    id: str  # short and typable; unique in the library and kept across scans
    paths: tuple[Path, ...]  # part order
    origin: str  # one of ORIGINS
    owned: bool  # TailorLM created the files (a download, a conversion), so it may delete them
    size_bytes: int
    repo: str | None = None
    quant: str | None = None
    arch: str | None = None
    name: str | None = None
    n_params: int | None = None
    n_layers: int | None = None
    context_length: int | None = None
    sha256: str | None = None
    added: float = 0.0  # time.time() when registered or first found
    provenance: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def path(self) -> Path:
        """The file llama.cpp loads (it finds the other parts of a split model itself)."""
        return self.paths[0]

    @property
    def present(self) -> bool:
        """False once a part was moved or deleted behind our back; the entry stays until removed."""
        return all(p.is_file() for p in self.paths)

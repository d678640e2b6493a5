"""The real models' headers, for writing slim copies of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.model.gguf_header import GGUFHeader, read_gguf_file


@pytest.fixture(scope="session")
def headers(smollm2_path: Path, gemma3_path: Path) -> dict[str, GGUFHeader]:
    return {"smollm2": read_gguf_file(smollm2_path), "gemma3": read_gguf_file(gemma3_path)}

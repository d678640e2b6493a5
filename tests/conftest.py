"""Shared fixtures: the real test models, and a private TAILORLM_HOME for every test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import models

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # GUI tests need no screen
# llama.cpp's converter: the environment scripts/test.sh built, shared by every test (and by
# module-scoped fixtures, which run before function-scoped monkeypatches).
os.environ.setdefault(
    "TAILORLM_CONVERTER_ENV", str(Path(__file__).resolve().parent.parent / ".cache" / "converter-env")
)


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read or write the developer's real config, cache or data.
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TAILORLM_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf-hub"))  # nor the developer's Hugging Face cache
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # nor the models of the developer's LM Studio and Ollama (the library scans $HOME's folders)
    monkeypatch.setenv("HOME", str(home / "user"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return models.smollm2_path()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return models.gemma3_path()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 90 MiB tmpfs: a real disk that fills up (the SmolLM2 file is 94 MiB). Needs root to
    mount; skipped elsewhere."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=90m", "tmpfs", str(mount)], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)

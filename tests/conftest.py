"""Shared fixtures: the real test models, and a private TAILORLM_HOME for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import models


@pytest.fixture(autouse=True)
def _private_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never read or write the developer's real config, cache or data.
    monkeypatch.setenv("TAILORLM_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return models.smollm2_path()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return models.gemma3_path()

"""A chat store on a fresh file for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.chat.database import DB_FILENAME
from app.core.chat.store import ChatStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / DB_FILENAME


@pytest.fixture
def store(db: Path) -> Iterator[ChatStore]:
    with ChatStore(db) as s:
        yield s

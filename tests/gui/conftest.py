"""Fixtures shared by the GUI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.gui.context import AppContext
from app.gui.panels.library import LibraryPanel
from app.gui.workers import wait_for_workers


@pytest.fixture
def library_panel(qtbot: QtBot, tmp_path: Path) -> Iterator[LibraryPanel]:
    """The Library panel, shown, with its first scan done; settings in the test's folder."""
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = LibraryPanel(ctx)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitUntil(lambda: not widget.tasks, timeout=10_000)  # the first scan
    yield widget
    widget.shutdown()
    wait_for_workers(10_000)

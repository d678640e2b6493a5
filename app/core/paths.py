"""Every path the app writes to, built from platformdirs in one place.

Tests (and power users) point everything somewhere else with ``TAILORLM_HOME``.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "tailorlm"
HOME_ENV = "TAILORLM_HOME"  # one override hook: tests point all paths into a temp folder


def _base(kind: str) -> Path:
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override) / kind
    else:
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        path = Path(
            {
                "data": dirs.user_data_dir,
                "cache": dirs.user_cache_dir,
                "config": dirs.user_config_dir,
                "log": dirs.user_log_dir,
            }[kind]
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Registry, chats and other user data."""
    return _base("data")


def cache_dir() -> Path:
    """Things we can recompute: measured bandwidth, dry-run calibrations."""
    return _base("cache")


def config_dir() -> Path:
    """User settings (JSON)."""
    return _base("config")


def log_dir() -> Path:
    """Rotating logs and crash reports."""
    return _base("log")

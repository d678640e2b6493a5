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


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache shared with other tools, read from the environment at call time.

    huggingface_hub freezes ``HF_HUB_CACHE`` when it is imported; this follows the same rules
    (``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ``~/.cache/huggingface/hub``) but late.
    """
    explicit = os.environ.get("HF_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    base = Path(home) if home else Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return base.expanduser() / "hub"

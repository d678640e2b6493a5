"""Shared fixtures: the real test models, a private TAILORLM_HOME for every test, and a check that
no test leaves Qt work running."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="session")
def _machine_probe(tmp_path_factory: pytest.TempPathFactory) -> bytes | None:
    """The machine probe's cache file, made once per run: every test's private home starts with it,
    so a test that detects the machine does not pay for a probe child (1-4 s) of its own."""
    home = tmp_path_factory.mktemp("probe-home")
    env = {**os.environ, "TAILORLM_HOME": str(home)}
    code = "from app.core.machine.probe import probe_devices; probe_devices()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=300, check=False
    )
    cached = home / "cache" / "machine_probe.json"
    return cached.read_bytes() if done.returncode == 0 and cached.is_file() else None


@pytest.fixture(scope="session")
def _native_helper(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The model process's C helpers (app/engine/native), built once per run: every test's private
    home starts with them in its cache, so a model process does not compile them for each test."""
    from app.engine import native

    try:
        return native.build(native.cached_path(tmp_path_factory.mktemp("native")))
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None  # no C compiler: the numpy and Python fallbacks (tests/engine/test_native.py says so)


@pytest.fixture(autouse=True)
def _private_home(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    _machine_probe: bytes | None,
    _native_helper: Path | None,
) -> None:
    # Never read or write the developer's real config, cache or data.
    home = tmp_path_factory.mktemp("home")
    if _machine_probe is not None:
        (home / "cache").mkdir()
        (home / "cache" / "machine_probe.json").write_bytes(_machine_probe)
    monkeypatch.setenv("TAILORLM_HOME", str(home))
    if _native_helper is not None:
        from app.engine import native

        dest = native.cached_library()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_native_helper, dest)
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf-hub"))  # nor the developer's Hugging Face cache
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # nor the models of the developer's LM Studio and Ollama (the library scans $HOME's folders)
    monkeypatch.setenv("HOME", str(home / "user"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)


@pytest.fixture(autouse=True)
def _qt_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a worker, a thread-pool task, a QThread or a QTimer running, or whose
    worker raised an unexpected error (tests/gui/leaks.py). Set up before, so torn down after, the
    test's own fixtures: a panel fixture's shutdown and wait come first. Without Qt imported (the
    core's tests, which must run without PySide6) there is nothing to watch."""
    if "PySide6.QtCore" not in sys.modules:
        yield
        return
    from tests.gui.leaks import LeakWatch

    watch = LeakWatch(monkeypatch)
    yield
    problems = watch.problems()
    watch.clean_up()
    if problems:
        pytest.fail("The test left Qt work behind:\n" + "\n".join(problems), pytrace=False)


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

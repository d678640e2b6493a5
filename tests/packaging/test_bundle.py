"""The packaged app (``bash packaging/build.sh`` → ``dist/TailorLM/``) runs without TailorLM's
Python environment: the window comes up, and the command-line entry of the same bundle advises on
a real model and answers one chat message. Reports the bundle's size and start time.

scripts/test.sh builds the bundle first; run by hand, these tests need ``dist/TailorLM``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "TailorLM"
pytestmark = pytest.mark.skipif(
    not (BUNDLE / "TailorLM").exists(), reason="no bundle: bash packaging/build.sh"
)


def _env(tmp_path: Path) -> dict[str, str]:
    # Nothing of the development environment: no venv on PATH, no PYTHONPATH, a fresh home.
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TAILORLM_HOME": str(tmp_path / "tl"),
            "QT_QPA_PLATFORM": "offscreen", "LANG": "C.UTF-8"}  # fmt: skip


def test_the_window_comes_up(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "TAILORLM_SMOKE_TEST": "1"}
    t0 = time.perf_counter()
    out = subprocess.run(
        [str(BUNDLE / "TailorLM")], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    took = time.perf_counter() - t0 - 0.5  # the smoke test waits 0.5 s after showing the window
    assert out.returncode == 0, out.stderr[-2000:]
    assert "window shown: True title=TailorLM" in out.stdout
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file() and not f.is_symlink())
    report = {"bundle_bytes": size, "start_to_window_s": round(took, 2)}
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "bundle-report.json").write_text(json.dumps(report))
    print(f"\nbundle {size / 2**20:.0f} MiB, window after {took:.2f} s")


def test_the_cli_of_the_same_bundle_advises_and_chats(tmp_path: Path, smollm2_path: Path) -> None:
    cli = str(BUNDLE / "tailorlm")
    env = _env(tmp_path)
    advise = subprocess.run([cli, "advise", str(smollm2_path), "--json", "--no-bandwidth"], capture_output=True,
                            text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert advise.returncode == 0, advise.stderr[-2000:]
    data = json.loads(advise.stdout)
    assert data["recommended"] and data["model"]["architecture"] == "llama"
    ask = ["chat", str(smollm2_path), "--prompt", "What is the capital of France?", "--json",
           "--temperature", "0", "--max-tokens", "16", "--no-bandwidth"]  # fmt: skip
    chat = subprocess.run([cli, *ask], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert chat.returncode == 0, chat.stderr[-2000:]
    # The bundle answers what the source tree answers on this machine (same llama.cpp, same file).
    source = subprocess.run([sys.executable, "-m", "app.cli", *ask], capture_output=True, text=True,
                            timeout=180, check=False)  # fmt: skip
    assert (
        json.loads(chat.stdout)["text"]
        and json.loads(chat.stdout)["text"] == json.loads(source.stdout)["text"]
    )

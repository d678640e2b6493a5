"""The packaged app (``bash packaging/build.sh`` → ``dist/TailorLM/``) runs without TailorLM's
Python environment: the window comes up, the start check says in words when it cannot, and the
command-line entry of the same bundle advises on a real model and answers one chat message.
Reports the bundle's size and start time.

CI builds the bundle first (``.ci/run`` sets TAILORLM_BUILD_BUNDLE=1 for scripts/test.sh), and
then a missing bundle fails these tests; run by hand without ``dist/TailorLM`` they skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.gui.platform_check import DEBIAN_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "dist" / "TailorLM"


@pytest.fixture(scope="module", autouse=True)
def _bundle() -> None:
    if (BUNDLE / "TailorLM").exists():
        return
    if os.environ.get("TAILORLM_BUILD_BUNDLE") == "1":
        pytest.fail("scripts/test.sh was to build dist/TailorLM (TAILORLM_BUILD_BUNDLE=1); it is not there")
    pytest.skip("no bundle in dist/TailorLM: `bash packaging/build.sh` builds it and runs these tests")


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


def test_the_bundle_ships_the_c_helpers(tmp_path: Path) -> None:
    """The model process's C helpers (the sampler's cut, the abort callback) are inside the bundle and is the one the bundle loads: a user's machine
    needs no C compiler (PATH here has none of the venv, and the home is fresh)."""
    done = subprocess.run([str(BUNDLE / "tailorlm"), "--child", "app.engine.native"], capture_output=True,
                          text=True, env=_env(tmp_path), timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert Path(done.stdout.strip()).parent == BUNDLE / "_internal" / "app" / "engine" / "native"
    assert not (tmp_path / "tl" / "cache" / "native").exists()  # nothing was built


def test_the_bundle_serves_the_openai_api(tmp_path: Path, smollm2_path: Path) -> None:
    """``tailorlm serve`` from the bundle: uvicorn's protocol modules are imported by name at run
    time, so only a real request shows the bundle has them."""
    import re
    import signal
    import urllib.request

    proc = subprocess.Popen([str(BUNDLE / "tailorlm"), "serve", str(smollm2_path), "--port", "0", "--ctx", "1024",
                             "--no-bandwidth"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp_path))  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"at (http://\S+/v1)", line)
        assert found, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
        body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}).encode()
        req = urllib.request.Request(f"{found.group(1)}/chat/completions", data=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert json.load(resp)["usage"]["completion_tokens"] >= 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_a_display_the_bundle_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in _env(tmp_path).items() if k != "QT_QPA_PLATFORM"}  # and no DISPLAY
    done = subprocess.run([str(BUNDLE / "TailorLM")], capture_output=True, text=True, env=env, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        done.stderr.startswith("TailorLM: The window cannot open: there is no display")
        and "Traceback" not in done.stderr
    )


def test_the_bundle_names_the_packages_its_x11_plugin_lacks(tmp_path: Path) -> None:
    """What the bundle's own start check finds missing is what glibc's loader (ldd) finds missing
    for the bundled xcb plugin, with the bundle's library folder on the path as its launcher sets."""
    plugin = next(BUNDLE.rglob("platforms/libqxcb.so"))
    internal = plugin.parents[4]  # …/_internal/PySide6/Qt/plugins/platforms/libqxcb.so
    if shutil.which("ldd") is None:
        pytest.skip("needs ldd for the reference verdict")
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=False,
                         env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(internal)}).stdout  # fmt: skip
    expected = sorted({line.split()[0] for line in ldd.splitlines() if "=> not found" in line})
    env = {k: v for k, v in _env(tmp_path).items() if k != "QT_QPA_PLATFORM"}
    env["DISPLAY"] = ":99"  # no X server there: the check must not need one
    done = subprocess.run([str(BUNDLE / "TailorLM"), "--child", "app.gui.platform_check"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    if not expected:
        assert done.returncode == 0, done.stderr[-2000:]
        return
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"needs {expected[0]}" in done.stderr
    packages = sorted(DEBIAN_PACKAGES[name] for name in expected)
    assert f"sudo apt install {' '.join(packages)}" in done.stderr

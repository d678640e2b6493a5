"""``tailorlm serve`` as a user runs it: the address on stdout, answers, Ctrl+C ends it (issue 18)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _tailorlm(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})})  # fmt: skip


def test_serve_answers_and_stops_on_ctrl_c(smollm2_path: Path) -> None:
    proc = _tailorlm("serve", str(smollm2_path), "--port", "0", "--ctx", "1024", "--threads", "1",
                     env={"TAILORLM_API_KEY": "key-from-env"})  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line)
        assert found, line + (proc.stderr.read() if proc.stderr else "")
        url = found.group(1)
        assert "API key is required" in line and "key-from-env" not in line
        body = json.dumps(
            {"model": "x", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
        ).encode()
        req = urllib.request.Request(f"{url}/chat/completions", data=body, headers={
            "content-type": "application/json", "authorization": "Bearer key-from-env"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.load(resp)
        assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] <= 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_public_address_without_a_key_before_loading(smollm2_path: Path) -> None:
    t0 = time.monotonic()
    proc = _tailorlm("serve", str(smollm2_path), "--host", "0.0.0.0", "--port", "0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "needs an API key" in err and "--api-key" in err
    assert "Serving" not in out and time.monotonic() - t0 < 30

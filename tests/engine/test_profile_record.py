"""Every chat answer and every failed load leaves a profile, and the advisor shows it beside its
plan (issue 19, first part): real model, real store, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.advice.profiles import file_identity
from app.core.advice.profiles_db import ProfileStore
from app.core.chat.store import ChatStore
from app.engine import protocol as P
from app.engine.chat import ChatSession
from app.engine.client import EngineClient
from app.engine.errors import LoadFailed

pytestmark = pytest.mark.slow


def _cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TAILORLM_HOME": str(home)} if home else {})}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)  # fmt: skip


def test_an_answer_and_a_failed_load_are_recorded(smollm2_path: Path) -> None:
    with EngineClient() as client, ChatStore() as chats:
        with ChatSession(client, chats, P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=1),
                         sampling=P.Sampling(temperature=0, max_tokens=8)) as session:  # fmt: skip
            session.start()
            list(session.send("Hello"))
        huge = P.Load(model_path=str(smollm2_path), n_ctx=8_000_000, n_threads=1)  # a KV cache of ~170 GiB
        with ChatSession(client, chats, huge) as big, pytest.raises(LoadFailed, match="memory"):
            big.start()
    with ProfileStore() as store:
        runs = store.all()
    assert [(p.key.n_ctx, p.measured.outcome) for p in runs] == [(8_000_000, "out_of_memory"), (1024, "ok")]
    ok = runs[1]
    assert ok.key.file_id == file_identity(smollm2_path) and ok.key.quant == "Q4_1" and ok.key.n_threads == 1
    m = ok.measured
    assert m.peak_ram_bytes and m.peak_ram_bytes > 100 << 20 and m.gen_tok_s and m.gen_tok_s > 0
    assert m.load_s and m.load_s > 0 and m.depth and m.depth > 8
    assert ok.source == "here" and "SmolLM2" in ok.model_name


def test_advise_shows_the_run_beside_its_plan_and_profiles_travel_without_paths(smollm2_path: Path,
                                                                                tmp_path: Path) -> None:  # fmt: skip
    chat = _cli("chat", str(smollm2_path), "--prompt", "Hi", "--max-tokens", "8", "--ctx", "2048",
                "--no-bandwidth", "--json")  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    advice = _cli("advise", str(smollm2_path), "--ctx", "2048", "--no-bandwidth", "--json")
    assert advice.returncode == 0, advice.stderr
    plans = json.loads(advice.stdout)["plans"]
    ran = [p for p in plans if p["measured"] is not None]
    assert [(p["quant"], p["n_ctx"], p["n_gpu_layers"]) for p in ran] == [("Q4_1", 2048, 0)]
    measured = ran[0]["measured"]
    assert measured["outcome"] == "ok" and measured["ram_bytes"] > 0 and measured["tok_s"] > 0
    # the prediction and the measurement side by side, within reason for this small model
    assert 0.5 < measured["ram_bytes"] / ran[0]["ram_bytes"] < 2.0
    text = _cli("advise", str(smollm2_path), "--ctx", "2048", "--no-bandwidth")
    assert "Measured here" in text.stdout and "tokens/s" in text.stdout

    exported = tmp_path / "profiles.json"
    assert _cli("profiles", "export", str(exported)).returncode == 0
    raw = exported.read_text()
    for private in (
        str(smollm2_path.parent),
        smollm2_path.name,
        os.environ["TAILORLM_HOME"],
        str(Path.home()),
    ):
        assert private not in raw
    other = tmp_path / "other-home"
    imported = _cli("profiles", "import", str(exported), home=other)
    assert imported.returncode == 0 and "Imported 1 profiles" in imported.stdout, imported.stderr
    assert "Imported 0 profiles" in _cli("profiles", "import", str(exported), home=other).stdout  # once only
    listed = _cli("profiles", "--json", home=other)
    (row,) = json.loads(listed.stdout)
    assert row["source"] == "imported" and row["quant"] == "Q4_1"
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "tailorlm-profiles", "version": 99, "profiles": []}')
    refused = _cli("profiles", "import", str(bad), home=other)
    assert refused.returncode == 2 and "tailorlm:" in refused.stderr and "Traceback" not in refused.stderr


def test_the_servers_answers_are_kept_as_one_profile_of_their_medians(smollm2_path: Path) -> None:
    import threading

    from app.server.served_model import Job, ServedModel

    served = ServedModel(P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=1))
    served.start()
    finished = threading.Semaphore(0)
    dones: list[P.Done] = []

    def sink(event: object) -> None:
        if isinstance(event, P.Done | Exception):
            dones.append(event)  # type: ignore[arg-type]
            finished.release()

    sampling = P.Sampling(temperature=0, max_tokens=12, ignore_eos=True)
    try:
        for text in ("One", "Two words", "Three words here"):
            served.submit(Job(served.new_request_id(), lambda s, t=text: (t, sampling), sink))
        for _ in range(3):
            assert finished.acquire(timeout=120)
    finally:
        served.close()
    assert all(isinstance(d, P.Done) and d.n_gen_tokens == 12 for d in dones)
    with ProfileStore() as store:
        [kept] = store.all()
    assert kept.kind == "server" and kept.measured.reps == 3 and kept.measured.n_gen == 36
    speeds = sorted(d.gen_tok_s for d in dones if d.gen_tok_s)
    assert kept.measured.gen_tok_s == speeds[1]  # the median of the three
    assert kept.predicted is not None and kept.predicted.tok_s > 0 and kept.key.quant == "Q4_1"

"""The command line as a user or a script runs it: real files, real exit codes, real JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def tailorlm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_hw_json_describes_this_machine() -> None:
    out = tailorlm("hw", "--json", "--no-bandwidth")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ram_total_bytes"] > data["ram_available_bytes"] > 0
    assert data["cpu"]["logical_cores"] >= 1
    assert isinstance(data["gpus"], list)


def test_hw_overrides_what_if() -> None:
    data = json.loads(tailorlm("hw", "--json", "--no-bandwidth", "--ram", "16GB", "--vram", "8GiB").stdout)
    assert data["ram_total_bytes"] == 16_000_000_000
    assert data["gpus"][0]["vram_total_bytes"] == 8 << 30


def test_advise_gguf_json(smollm2_path: Path) -> None:
    out = tailorlm("advise", str(smollm2_path), "--json", "--no-bandwidth", "--ctx", "4096")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    plans = data["plans"]
    assert {
        "quant",
        "n_ctx",
        "n_gpu_layers",
        "fits",
        "ram_bytes",
        "vram_bytes",
        "breakdown",
        "tok_s",
        "quality",
    } <= set(plans[0])
    assert "Q4_1" in {p["quant"] for p in plans}  # the file's own quant is a plan
    assert all(p["n_ctx"] == 4096 for p in plans)
    rec = data["recommended"]
    assert rec is not None and rec["fits"] is True
    assert rec["ram_bytes"] == sum(d["total_bytes"] for d in rec["breakdown"] if d["device"] == "CPU")
    assert data["reasons"] and all(isinstance(r, str) for r in data["reasons"])


def test_advise_with_a_hypothetical_gpu_offloads(gemma3_path: Path) -> None:
    data = json.loads(
        tailorlm("advise", str(gemma3_path), "--json", "--no-bandwidth", "--vram", "8GB").stdout
    )
    rec = data["recommended"]
    assert rec["placement"] == "gpu" and rec["n_gpu_layers"] == 19 and rec["vram_bytes"] > 0


def test_advise_too_little_ram_says_so(gemma3_path: Path) -> None:
    out = tailorlm("advise", str(gemma3_path), "--json", "--no-bandwidth", "--ram", "1.2GB")
    data = json.loads(out.stdout)
    assert out.returncode == 0
    assert data["recommended"] is None
    assert "does not fit" in data["reasons"][0]


def test_advise_human_table(gemma3_path: Path) -> None:
    out = tailorlm("advise", str(gemma3_path), "--no-bandwidth")
    assert out.returncode == 0, out.stderr
    assert "<- recommended" in out.stdout and "Q4_K_M" in out.stdout and "Q8_0" in out.stdout


def test_advise_dry_run_agrees_with_llama_cpp(smollm2_path: Path) -> None:
    data = json.loads(tailorlm("advise", str(smollm2_path), "--json", "--no-bandwidth", "--dry-run").stdout)
    check = data["dry_run"]
    assert check["llama_cpp"]["kv"] == check["tailorlm"]["kv"]
    assert (
        abs(check["llama_cpp"]["compute"] - check["tailorlm"]["compute"])
        < 0.01 * check["llama_cpp"]["compute"]
    )


def test_advise_catalog_name() -> None:
    data = json.loads(tailorlm("advise", "qwen2.5-1.5b-instruct", "--json", "--no-bandwidth").stdout)
    assert data["model"]["architecture"] == "qwen2"
    assert 1.4e9 < data["model"]["n_params"] < 1.7e9


def test_catalog_lists_best_first() -> None:
    out = tailorlm("catalog", "--json", "--no-bandwidth", "--ram", "8GB")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) >= 20
    runnable = [r for r in rows if r["recommended"]]
    assert runnable and all(r["recommended"]["ram_bytes"] <= 8e9 for r in runnable)
    first_unrunnable = next((i for i, r in enumerate(rows) if not r["recommended"]), len(rows))
    assert all(r["recommended"] for r in rows[:first_unrunnable])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty or too short"),
        (b"not a model at all, just text" * 4, "not a GGUF"),
    ],
)
def test_bad_files_give_one_clear_line(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    out = tailorlm("advise", str(bad), "--no-bandwidth")
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_truncated_gguf(tmp_path: Path, gemma3_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with gemma3_path.open("rb") as f:
        cut.write_bytes(f.read(100_000_000))
    out = tailorlm("advise", str(cut), "--no-bandwidth")
    assert out.returncode == 2 and "truncated" in out.stderr and "Traceback" not in out.stderr


def test_checkpoint_without_config(tmp_path: Path) -> None:
    out = tailorlm("advise", str(tmp_path), "--no-bandwidth")
    assert out.returncode == 2 and "config.json" in out.stderr


def test_unknown_architecture(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "frobnicator", "architectures": ["FrobForCausalLM"]})
    )
    out = tailorlm("advise", str(tmp_path), "--no-bandwidth")
    assert out.returncode == 2 and "frobnicator" in out.stderr and "Traceback" not in out.stderr


def test_bad_size() -> None:
    out = tailorlm("advise", "smollm2-135m-instruct", "--ram", "lots")
    assert out.returncode == 2 and "not a size" in out.stderr


def test_python_m_app_shows_help() -> None:
    out = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "advise" in out.stdout


def test_hub_repo_offline_fails_fast_with_one_line() -> None:
    import time

    t0 = time.perf_counter()
    out = tailorlm(
        "advise", "someorg/some-model", "--no-bandwidth", env={"HF_ENDPOINT": "https://hub.invalid"}
    )
    assert out.returncode == 2 and "Cannot reach hub.invalid" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 20


def test_advise_hub_repo_reads_only_its_config(tmp_path: Path) -> None:
    from tests.fake_hub import fake_hub

    config = {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
              "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
              "max_position_embeddings": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}  # fmt: skip
    with fake_hub({"acme/my-finetune": {"config.json": json.dumps(config).encode()}}) as url:
        env = {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1"}
        out = tailorlm("advise", "acme/my-finetune", "--json", "--no-bandwidth", env=env)
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert data["model"]["source_kind"] == "hf_repo" and data["model"]["architecture"] == "qwen2"
        assert 1.5e9 < data["model"]["n_params"] < 1.6e9
        missing = tailorlm("advise", "nobody/nothing", "--no-bandwidth", env=env)
        assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_advise_a_gguf_on_the_hub_reads_only_its_header(smollm2_path: Path) -> None:
    from tests.fake_hub import fake_hub

    with fake_hub({"acme/smol-GGUF": {"SmolLM2-135M-Instruct.Q4_1.gguf": smollm2_path.read_bytes()}}) as url:
        out = tailorlm("advise", "acme/smol-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf", "--json", "--no-bandwidth",
                       env={"HF_ENDPOINT": url})  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"]["source_kind"] == "hf_gguf" and data["model"]["file_type"] == "Q4_1"
    assert "Q4_1" in {p["quant"] for p in data["plans"]}


def test_files_lists_and_sizes_up_every_gguf(smollm2_path: Path, tmp_path: Path) -> None:
    from tests.fake_hub import fake_hub

    smol = smollm2_path.read_bytes()
    repo = {"SmolLM2-135M-Instruct.Q4_1.gguf": smol, "README.md": b"# hi", "mmproj-x-f16.gguf": b"GGUF"}
    with fake_hub({"acme/smol-GGUF": repo}) as url:
        out = tailorlm("files", "acme/smol-GGUF", "--json", "--no-bandwidth",
                       env={"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")})  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    [f] = data["files"]  # README and the multimodal projector are not models
    assert f["quant"] == "Q4_1" and f["size_bytes"] == len(smol)
    import hashlib

    assert f["sha256"] == [hashlib.sha256(smol).hexdigest()]
    assert f["plan"]["fits"] is True and f["plan"]["quant"] == "Q4_1"


def _ram_flags_between(model_path: Path, low_ctx: int, high_ctx: int) -> list[str]:
    """--ram/--reserve for a machine whose budget lies between what two contexts need."""
    from app.core.advice.chat_plan import ChatOverrides, plan_chat
    from app.core.advice.recommend import Budget
    from app.core.machine.hardware import OS_RESERVE_FRACTION
    from app.core.model.source import model_from_gguf

    model = model_from_gguf(model_path)
    plenty = Budget(ram_bytes=1 << 40, ram_bandwidth_bytes_s=20e9)
    need = [plan_chat(model, plenty, ChatOverrides(n_ctx=c)).plan.ram_bytes for c in (low_ctx, high_ctx)]
    available = sum(need) // 2
    total = int(available / (1 - OS_RESERVE_FRACTION)) + 1
    return ["--ram", str(total), "--reserve", "1", "--no-bandwidth"]


def test_chat_refuses_a_plan_that_does_not_fit_and_loads_it_when_forced(smollm2_path: Path) -> None:
    flags = _ram_flags_between(smollm2_path, 1024, 8192)
    refused = tailorlm("chat", str(smollm2_path), "--ctx", "8192", "--prompt", "Hi", "--json", *flags)
    assert refused.returncode == 2 and refused.stdout == ""
    err = refused.stderr
    assert "8,192-token context" in err and "cannot give it that" in err  # the reason
    assert "It fits with " in err and "Or load it anyway." in err  # the nearest plan that fits
    forced = tailorlm("chat", str(smollm2_path), "--ctx", "8192", "--prompt", "Hi", "--json",
                      "--max-tokens", "4", "--force", *flags)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert "Loading anyway" in forced.stderr  # what will probably happen
    out = json.loads(forced.stdout)
    assert out["load"]["n_ctx"] == 8192 and out["plan"]["forced"] is True


def test_chat_honours_the_kv_cache_type_and_predicts_a_manual_split(smollm2_path: Path) -> None:
    kv = {}
    for kv_type in ("F16", "Q8_0"):
        out = tailorlm("chat", str(smollm2_path), "--prompt", "Hi", "--json", "--max-tokens", "2", "--ngl", "0",
                       "--kv-type", kv_type, "--no-bandwidth")  # fmt: skip
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        kv[kv_type] = sum(v for k, v in data["load"]["buffers"].items() if k.startswith("kv:"))
        assert data["plan"]["predicted"]["ram_bytes"] > 0  # a manual split is predicted too
    # llama.cpp's own buffer log: the Q8_0 cache is about half the F16 one (8.5 bits against 16).
    assert 0.4 * kv["F16"] < kv["Q8_0"] < 0.6 * kv["F16"]


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(smollm2_path: Path, tmp_path: Path) -> None:
    import signal
    import time

    out_file = tmp_path / "out.txt"
    with out_file.open("w") as out:
        chat = subprocess.Popen([sys.executable, "-m", "app.cli", "chat", str(smollm2_path), "--max-tokens", "400",
                                 "--temperature", "0.8", "--seed", "1", "--threads", "1", "--no-bandwidth"],
                                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        assert chat.stdin is not None
        deadline = time.monotonic() + 120
        while "Type a message" not in out_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        chat.stdin.write("Write a very long story about a dragon.\n")
        chat.stdin.flush()
        start = out_file.stat().st_size
        while out_file.stat().st_size < start + 40 and time.monotonic() < deadline:
            time.sleep(0.05)  # the answer is streaming
        chat.send_signal(signal.SIGINT)  # Ctrl+C
        while "stopped]" not in out_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        chat.stdin.write("Say hello.\n")
        chat.stdin.close()  # then Ctrl+D: the chat ends
        assert chat.wait(timeout=120) == 0
    summaries = [
        line for line in out_file.read_text().splitlines() if line.startswith("[") and "tokens," in line
    ]
    assert len(summaries) == 2, out_file.read_text()[-2000:]
    assert summaries[0].endswith(", stopped]") and not summaries[0].startswith("[400 tokens")
    assert not summaries[1].endswith("stopped]")  # Ctrl+C stopped that answer only


def test_bytes_that_are_not_utf8_on_the_chats_stdin_do_not_crash_it(smollm2_path: Path) -> None:
    chat = subprocess.run([sys.executable, "-m", "app.cli", "chat", str(smollm2_path), "--max-tokens", "4",
                           "--no-bandwidth"], input=b"\xff\xfe hello\n/export\n", capture_output=True,
                          timeout=180, check=False)  # fmt: skip
    assert chat.returncode == 0, chat.stderr[-2000:]
    assert "\ufffd" in chat.stdout.decode("utf-8")  # the exported chat keeps what could be read


def test_chats_survive_a_damaged_history() -> None:
    from app.core import paths
    from app.core.chat.store import ChatStore

    with ChatStore() as store:  # one good conversation, one whose plan and settings were mangled
        store.create_conversation(title="Good", model="m.gguf", plan={"quant": "Q4_K_M"}, settings={})
        bad = store.create_conversation(title="Mangled", model="m.gguf", plan={}, settings={})
    db = paths.data_dir() / "chats.sqlite3"
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE conversations SET plan_json = '{not json', settings_json = '[1]' WHERE id = ?",
                     (bad.id,))  # fmt: skip
    listed = tailorlm("chats", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {c["title"] for c in json.loads(listed.stdout)} == {"Good", "Mangled"}
    assert tailorlm("chats", "--export", str(bad.id), "--format", "json").returncode == 0

    db.write_bytes(b"this is not a database" * 100)  # damaged: moved aside, and the user is told
    moved = tailorlm("chats")
    assert moved.returncode == 0 and "damaged" in moved.stderr and "moved aside" in moved.stderr
    for f in db.parent.glob("chats.sqlite3*"):
        if f.is_file():
            f.unlink()
    db.mkdir()  # a folder where the file belongs: one line, not a traceback
    folder = tailorlm("chats")
    assert folder.returncode == 2 and "Traceback" not in folder.stderr and folder.stderr.count("\n") == 1

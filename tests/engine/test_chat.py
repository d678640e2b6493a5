"""Conversations end to end on the real models: templates, storage, trimming, regenerate, edit,
and a Stop that lands before the answer or while the history is trimmed. The model's words are
never expected: what is stored is compared with what streamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.chat.store import ChatStore
from app.engine import protocol as P
from app.engine.chat import ChatSession, Trimmed
from app.engine.client import EngineClient


@pytest.fixture(autouse=True)
def _sessions_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ChatSession a test makes has its template process ended at teardown (the tests build
    sessions inline; without this each left a renderer process behind until pytest exited)."""
    made: list[ChatSession] = []
    init = ChatSession.__init__

    def tracked(self: ChatSession, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ChatSession, "__init__", tracked)
    yield
    for session in made:
        session.close()


def _text(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, P.TokenChunk))


def test_conversation_is_stored_and_survives_a_restart(tmp_path: Path, smollm2_path: Path) -> None:
    db = tmp_path / "chats.sqlite3"
    with EngineClient() as client, ChatStore(db) as store:
        chat = ChatSession(client, store, P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2),
                           system_prompt="You are brief.", sampling=P.Sampling(temperature=0, max_tokens=24))  # fmt: skip
        chat.start()
        assert chat.template is not None and chat.template.source == "gguf"
        first = list(chat.send("What is the capital of France?"))
        assert _text(first).strip()
        list(chat.send("And of Italy?"))
        conv_id = chat.conversation_id
    with ChatStore(db) as store:  # a new process would see the same
        thread = store.thread(conv_id)
        assert [m.role for m in thread] == ["system", "user", "assistant", "user", "assistant"]
        assert thread[2].status == "complete" and thread[2].timings and thread[2].timings["n_gen_tokens"] > 0
        assert thread[2].content == _text(first).strip()


def test_cancelled_answer_is_kept_as_partial(tmp_path: Path, smollm2_path: Path) -> None:
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = ChatSession(client, store, P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2),
                           sampling=P.Sampling(temperature=0.8, max_tokens=300, seed=3, ignore_eos=True))  # fmt: skip
        chat.start()
        n = 0
        rid = chat.new_request_id()
        events = []
        for ev in chat.send("Write a long poem about the ocean.", request_id=rid):
            events.append(ev)
            if isinstance(ev, P.TokenChunk):
                n += ev.n_tokens
                if n >= 8:
                    chat.cancel(rid)
        assert isinstance(events[-1], P.Done) and events[-1].stop_reason == "cancelled"
        last = store.thread(chat.conversation_id)[-1]
        assert last.role == "assistant" and last.status == "partial" and last.content == _text(events).strip()


def test_gemma_file_without_template_uses_the_fallback(tmp_path: Path, gemma3_path: Path) -> None:
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = ChatSession(client, store, P.Load(model_path=str(gemma3_path), n_ctx=1024, n_threads=2),
                           system_prompt="Answer briefly.", sampling=P.Sampling(temperature=0, max_tokens=8))  # fmt: skip
        chat.start()
        assert (
            chat.template is not None and chat.template.source == "fallback" and chat.template.name == "Gemma"
        )
        assert "No chat template in the file" in chat.template.describe()
        assert any(isinstance(e, P.Done) for e in chat.send("Hello"))


def test_overflow_drops_oldest_turns_and_keeps_the_system_prompt(tmp_path: Path, smollm2_path: Path) -> None:
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = ChatSession(client, store, P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=2),
                           system_prompt="SYSTEM RULE: be brief.", sampling=P.Sampling(temperature=0, max_tokens=16))  # fmt: skip
        chat.start()
        long = "Here is some context about the weather. " * 12  # ~100 tokens a turn
        trimmed = []
        for i in range(6):
            events = list(chat.send(f"{i}: {long}"))
            trimmed += [e.n_messages for e in events if isinstance(e, Trimmed)]
            assert any(isinstance(e, P.Done) for e in events)  # never fails on a full context
        assert trimmed  # older turns were left out, and the user is told
        # what the model saw always starts with the system prompt
        assert store.thread(chat.conversation_id)[0].content == "SYSTEM RULE: be brief."


def test_regenerate_and_edit_make_branches(tmp_path: Path, smollm2_path: Path) -> None:
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = ChatSession(client, store, P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2),
                           sampling=P.Sampling(temperature=0.9, max_tokens=12, seed=7))  # fmt: skip
        chat.start()
        list(chat.send("Name a fruit."))
        first_answer = store.thread(chat.conversation_id)[-1]
        list(chat.regenerate())
        second_answer = store.thread(chat.conversation_id)[-1]
        assert second_answer.id != first_answer.id and second_answer.parent_id == first_answer.parent_id
        user = store.thread(chat.conversation_id)[-2]
        list(chat.edit(user.id, "Name a vegetable."))
        thread = store.thread(chat.conversation_id)
        assert thread[-2].content == "Name a vegetable." and thread[-1].role == "assistant"
        assert len(store.siblings(user.id)) == 2


def test_cli_chat_once_json(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "chat", str(smollm2_path), "--prompt", "What is the capital of France?",
         "--temperature", "0", "--max-tokens", "24", "--json", "--no-bandwidth", "--ctx", "1024"],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "TAILORLM_HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["text"].strip() and data["metrics"]["stop_reason"] in ("eos", "max_tokens")
    assert data["metrics"]["n_gen_tokens"] > 0 and data["metrics"]["gen_tok_s"] > 0
    assert data["plan"]["predicted"]["ram_bytes"] > 0  # --ngl auto: the advisor's plan
    # the app's own sampling of the model process agrees with what the process says of itself
    measured = data["metrics"]["measured_rss_bytes"]
    assert 50 << 20 < measured <= data["metrics"]["peak_rss_bytes"] * 1.05
    assert data["metrics"]["measured_vram_bytes"] is None  # no NVIDIA GPU here


def _session(client: EngineClient, store: ChatStore, model: Path, n_ctx: int = 1024) -> ChatSession:
    chat = ChatSession(client, store, P.Load(model_path=str(model), n_ctx=n_ctx, n_threads=2),
                       system_prompt="Be brief.", sampling=P.Sampling(temperature=0, max_tokens=16))  # fmt: skip
    chat.start()
    return chat


def test_stop_before_the_turn_starts_ends_it_at_once(tmp_path: Path, smollm2_path: Path) -> None:
    """The window queues a turn and the user presses Stop before it runs: the message is kept,
    nothing is evaluated, no answer is stored."""
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = _session(client, store, smollm2_path)
        rid = chat.new_request_id()
        chat.cancel(rid)
        events = list(chat.send("Hello there.", request_id=rid))
        assert events == [P.Done.cancelled_before_start(rid)]
        assert [m.role for m in store.thread(chat.conversation_id)] == ["system", "user"]
        assert any(isinstance(e, P.Done) and e.stop_reason != "cancelled" for e in chat.send("Hello again."))


def test_stop_while_the_history_is_trimmed_ends_the_turn_there(tmp_path: Path, smollm2_path: Path) -> None:
    """Stop pressed (from another thread) while the history is being counted: the trimming stops
    at its next step and nothing is generated. The count is spied on, never replaced."""
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = _session(client, store, smollm2_path, n_ctx=512)
        long = "Here is some context about the weather. " * 12  # ~100 tokens a turn: trimming soon
        for i in range(3):
            list(chat.send(f"{i}: {long}"))
        rid = chat.new_request_id()
        counted: list[int] = []
        real_count = client.count_tokens

        def count_then_stop(text: str, *, request_id: int | None = None, timeout_s: float = 60.0) -> int:
            n = real_count(text, request_id=request_id, timeout_s=timeout_s)
            counted.append(n)
            if len(counted) == 1:  # Stop arrives from the window's thread after the first count
                stopper = threading.Thread(target=chat.cancel, args=(rid,))
                stopper.start()
                stopper.join()
            return n

        client.count_tokens = count_then_stop  # type: ignore[method-assign]
        events = list(chat.send(f"3: {long}", request_id=rid))
        assert len(counted) == 1  # one step, then the cancel stopped the trimming
        assert events == [P.Done.cancelled_before_start(rid)]
        assert store.thread(chat.conversation_id)[-1].role == "user"  # no answer stored


def test_new_conversation_starts_empty_with_the_loaded_model(tmp_path: Path, smollm2_path: Path) -> None:
    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = _session(client, store, smollm2_path)
        list(chat.send("Hello."))
        first = chat.conversation_id
        second = chat.new_conversation()
        assert second != first and chat.conversation_id == second and store.thread(second) == []
        answer = list(chat.send("Hi again."))
        assert isinstance(answer[-1], P.Done)
        assert [m.role for m in store.thread(second)] == ["system", "user", "assistant"]
        assert len(store.thread(first)) == 3  # the first conversation is untouched


def test_answers_name_their_model_and_a_chat_records_the_model_that_answers_in_it(
    tmp_path: Path, smollm2_path: Path, gemma3_path: Path
) -> None:
    """A chat started with SmolLM2 and continued with Gemma: each answer carries its model's label
    and its first-token wait, the chat the file and plan to load again; loading opens no empty chat."""
    from app.core.chat.model_ref import conversation_model

    with EngineClient() as client, ChatStore(tmp_path / "c.sqlite3") as store:
        chat = ChatSession(client, store, P.Load(model_path=str(smollm2_path), n_ctx=1024, n_threads=2),
                           sampling=P.Sampling(temperature=0, max_tokens=8), plan={"quant": "Q4_1"})  # fmt: skip
        chat.start(open_conversation=False)
        assert chat.conversation_id is None and store.list_conversations() == []
        cid = chat.new_conversation()
        list(chat.send("Hello."))
        first = store.thread(cid)[-1]
        assert first.model == chat.model_label and chat.model_label.endswith(" · Q4_1")
        assert first.timings is not None and first.timings["first_token_ms"] == chat.first_token_ms
        # the whole turn's wait is at least the model process's own part of it
        assert chat.first_token_ms is not None and chat.first_token_ms >= first.timings["ttft_ms"]
        assert store.get_conversation(cid).title == "Hello."
        chat.close()
        other = ChatSession(client, store, P.Load(model_path=str(gemma3_path), n_ctx=512, n_threads=2),
                            sampling=P.Sampling(temperature=0, max_tokens=4), conversation_id=cid)  # fmt: skip
        other.start()
        list(other.send("And now?"))
        other.close()
        answers = [m for m in store.thread(cid) if m.role == "assistant"]
        assert [m.model for m in answers] == [chat.model_label, other.model_label]
        assert chat.model_label != other.model_label
        ref = conversation_model(store.get_conversation(cid))
        assert ref is not None and ref.path == str(gemma3_path) and ref.load_settings()["n_ctx"] == 512
        assert ref.name == other.model_label and ref.quant is None  # no plan given: no quantization named

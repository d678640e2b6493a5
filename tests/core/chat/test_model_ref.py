"""Which model wrote a chat, the models used last, and an answer's numbers in words."""

from __future__ import annotations

from pathlib import Path

from app.core.chat import recent
from app.core.chat.answer_stats import answer_stats, first_token_ms
from app.core.chat.model_ref import ModelRef, conversation_model, model_label, same_file
from app.core.chat.store import ChatStore


def test_a_conversation_names_its_model_and_how_to_load_it_again(store: ChatStore, tmp_path: Path) -> None:
    path = tmp_path / "SmolLM2-135M-Instruct-Q4_1.gguf"
    plan = {"model_name": "SmolLM2 135M Instruct", "quant": "Q4_1", "n_ctx": 1024, "n_gpu_layers": 0,
            "type_k": "F16", "n_threads": 1, "predicted": {"ram_bytes": 1}}  # fmt: skip
    conv = store.create_conversation(title="t", model=str(path), plan=plan, settings={})
    ref = conversation_model(conv)
    assert ref is not None and ref.label == "SmolLM2 135M Instruct · Q4_1" and not ref.present
    assert ref.load_settings() == {"n_ctx": 1024, "n_gpu_layers": 0, "type_k": "F16"}
    path.write_bytes(b"GGUF")
    assert ref.present
    switched = store.set_model(conv.id, model="/models/other-Q8_0.gguf", plan={"n_ctx": "junk"})
    other = conversation_model(switched)
    assert other is not None and (other.name, other.quant, other.n_ctx) == ("other-Q8_0", None, None)
    assert other.label == "other-Q8_0" and other.load_settings() == {}
    bare = store.create_conversation(title="t", model="", plan={}, settings={})
    assert conversation_model(bare) is None
    assert model_label("Gemma", None) == "Gemma"


def test_recent_models_are_most_recent_first_without_repeats(tmp_path: Path) -> None:
    a, b = (
        ModelRef(str(tmp_path / "a.gguf"), "A", "Q4_K_M", n_ctx=2048),
        ModelRef(str(tmp_path / "b.gguf"), "B"),
    )
    kept = recent.remember(
        recent.remember(recent.remember((), a), b), ModelRef(str(tmp_path / "x/../a.gguf"), "A2")
    )
    assert [r.name for r in kept] == ["A2", "B"] and same_file(kept[0].path, a.path)
    assert recent.from_json(recent.to_json(kept)) == kept
    many = ()
    for i in range(recent.MAX_RECENT_MODELS + 3):
        many = recent.remember(many, ModelRef(f"/m/{i}.gguf", str(i)))
    assert len(many) == recent.MAX_RECENT_MODELS and many[0].name == str(recent.MAX_RECENT_MODELS + 2)
    for damaged in ("{", "[1, 2]", '{"path": "x"}', None, 42, '[{"path": 3}]'):
        assert recent.from_json(damaged) == ()


def test_answer_stats_in_words_unknown_is_a_dash() -> None:
    timings = {"n_gen_tokens": 24, "gen_tok_s": 41.53, "ttft_ms": 80.0, "first_token_ms": 120.4}
    assert answer_stats(timings) == "24 tokens · 41.5 tok/s · first token 120 ms"
    assert first_token_ms({"ttft_ms": 80}) == 80.0  # stored before the chat kept its own figure
    assert (
        answer_stats({"n_gen_tokens": 1, "gen_tok_s": None, "ttft_ms": None})
        == "1 token · — tok/s · first token — ms"
    )
    assert answer_stats({"wall_s": 3.0}) == "" and answer_stats(None) == ""

"""Chat templates: the real files' own template, the built-in fallbacks, the sandbox, trimming."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

from app.core.chat.template import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    ContextOverflowError,
    TemplateError,
    builtin_for,
    render,
    render_with_fallback,
    select_template,
    trim_history,
)
from app.core.errors import TailorError
from app.core.model.gguf_header import read_gguf_file

SYSTEM = {"role": "system", "content": "You are terse."}
CONVERSATION = [
    SYSTEM,
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"},
]

# Each family's published format for CONVERSATION, with bos "<s>" and eos "</s>".
EXPECTED = {
    "ChatML": (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    ),
    "Gemma": (
        "<s><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    ),
    "Llama 3": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "Llama 2": "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Bye [/INST]",
    "Mistral": "<s>[INST] You are terse.\n\nHi[/INST] Hello.</s>[INST] Bye[/INST]",
    "Phi-3": (
        "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n"
        "<|user|>\nBye<|end|>\n<|assistant|>\n"
    ),
    "Zephyr": (
        "<|system|>\nYou are terse.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n"
        "<|user|>\nBye</s>\n<|assistant|>\n"
    ),
}


def builtin(name: str) -> ChatTemplate:
    jinja, stops = BUILTIN_TEMPLATES[name]
    return ChatTemplate(name, "fallback", jinja, stops)


def file_template(jinja: str, arch: str = "gemma3") -> ChatTemplate:
    return select_template({"tokenizer.chat_template": jinja, "general.architecture": arch})


def test_smollm2_renders_its_own_template(smollm2_path: Path) -> None:
    template = select_template(read_gguf_file(smollm2_path).metadata)
    assert (template.source, template.name) == ("gguf", "from the model file")
    assert template.describe() == "Using the chat template from the model file."
    assert template.stop_strings == ("<|im_end|>",)
    prompt = render(template, [SYSTEM, {"role": "user", "content": "What is 2+2?"}])
    assert prompt == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # Without a system message the file's template adds its own default one.
    assert render(template, [{"role": "user", "content": "Hi"}]).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"
    )


def test_gemma3_without_template_falls_back_by_architecture(gemma3_path: Path) -> None:
    template = select_template(read_gguf_file(gemma3_path).metadata)
    assert (template.source, template.name) == ("fallback", "Gemma")
    assert template.describe() == (
        "No chat template in the file; using the Gemma template (by architecture gemma3)."
    )
    assert template.stop_strings == ("<end_of_turn>",)
    prompt = render(template, [SYSTEM, {"role": "user", "content": "Hi"}], bos_token="<bos>")
    assert prompt == "<bos><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_renders_known_format(name: str) -> None:
    assert render(builtin(name), CONVERSATION, bos_token="<s>", eos_token="</s>") == EXPECTED[name]


# Our built-ins against llama.cpp's own C++ formatter (src/llama-chat.cpp), which adds no BOS.
# Llama 2 is left out: llama.cpp's variants space it differently from Meta's reference.
LLAMA_CPP_NAMES = {
    "ChatML": ("chatml", ""),
    "Gemma": ("gemma", ""),
    "Llama 3": ("llama3", ""),
    "Mistral": ("mistral-v3", "</s>"),
    "Phi-3": ("phi3", ""),
    "Zephyr": ("zephyr", "<|endoftext|>"),
}


def llama_cpp_format(tmpl: str, messages: list[dict[str, str]]) -> str:
    llama_cpp: Any = pytest.importorskip("llama_cpp")
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *(llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages)
    )
    buf = ctypes.create_string_buffer(8192)
    n = llama_cpp.llama_chat_apply_template(tmpl.encode(), chat, len(messages), True, buf, len(buf))
    assert 0 < n <= len(buf)
    return buf.raw[:n].decode()


@pytest.mark.parametrize("name", sorted(LLAMA_CPP_NAMES))
def test_builtin_agrees_with_llama_cpp(name: str) -> None:
    tmpl, eos = LLAMA_CPP_NAMES[name]
    ours = render(builtin(name), CONVERSATION, eos_token=eos)
    assert ours == llama_cpp_format(tmpl, CONVERSATION)


def test_smollm2_template_agrees_with_llama_cpp(smollm2_path: Path) -> None:
    jinja = read_gguf_file(smollm2_path).metadata["tokenizer.chat_template"]
    assert render(select_template({"tokenizer.chat_template": jinja}), CONVERSATION) == llama_cpp_format(
        jinja, CONVERSATION
    )


@pytest.mark.parametrize(
    ("arch", "name", "pre", "expected"),
    [
        ("gemma", "Gemma 7b It", None, "Gemma"),
        ("gemma2", "", None, "Gemma"),
        ("llama", "Meta Llama 3.1 8B Instruct", None, "Llama 3"),
        ("llama", "Some Fine Tune", "llama-bpe", "Llama 3"),
        ("llama", "Some Fine Tune", "llama3", "Llama 3"),
        ("llama", "Llama 2 7b Chat Hf", None, "Llama 2"),
        ("llama", "Mistral 7B Instruct v0.2", None, "Mistral"),
        ("llama", "Zephyr 7b Beta", None, "Zephyr"),
        ("llama", "TinyLlama 1.1B Chat v1.0", None, "Zephyr"),
        ("llama", "Some Fine Tune", None, "ChatML"),
        ("qwen2", "Qwen2.5 0.5B Instruct", None, "ChatML"),
        ("phi3", "Phi 3 Mini 4k Instruct", None, "Phi-3"),
        ("mistral3", "", None, "Mistral"),
        ("falcon", "", None, "ChatML"),
        ("", "", None, "ChatML"),
    ],
)
def test_fallback_table(arch: str, name: str, pre: str | None, expected: str) -> None:
    metadata: dict[str, Any] = {"general.architecture": arch, "general.name": name}
    if pre:
        metadata["tokenizer.ggml.pre"] = pre
    template = select_template(metadata)
    assert (template.source, template.name) == ("fallback", expected)
    assert template.describe().startswith(f"No chat template in the file; using the {expected} template (")


def test_arguments_override_metadata() -> None:
    template = builtin_for({"general.architecture": "llama"}, name_hint="Llama-3.2-1B-Instruct")
    assert template.name == "Llama 3"
    assert template.chosen_by == "by architecture llama and the name 'Llama-3.2-1B-Instruct'"
    assert select_template({}, architecture="gemma3").name == "Gemma"


def test_named_variants_prefer_default() -> None:
    metadata = {
        "general.architecture": "command-r",
        "tokenizer.chat_template.tool_use": "TOOLS",
        "tokenizer.chat_template.default": "DEFAULT",
        "tokenizer.chat_templates": ["tool_use", "default"],
    }
    template = select_template(metadata)
    assert (template.jinja, template.name) == ("DEFAULT", "'default' from the model file")
    assert select_template({**metadata, "tokenizer.chat_template": "PLAIN"}).jinja == "PLAIN"
    del metadata["tokenizer.chat_template.default"]
    assert select_template(metadata).jinja == "TOOLS"


@pytest.mark.parametrize(
    "malicious",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__ }}",
        "{{ messages.append({'role': 'user'}) }}",
        "{% include '/etc/passwd' %}",
    ],
)
def test_sandbox_blocks_malicious_template(malicious: str) -> None:
    template = file_template(malicious)
    with pytest.raises(TemplateError) as info:
        render(template, CONVERSATION)
    assert isinstance(info.value, TailorError)
    assert str(info.value).startswith("The chat template from the model file could not format")
    assert info.value.hint == "TailorLM can use its built-in Gemma template instead."

    prompt, used = render_with_fallback(template, CONVERSATION, bos_token="<s>")
    assert prompt == EXPECTED["Gemma"]
    assert used.name == "Gemma"
    assert used.describe().startswith("The file's chat template failed (")
    assert used.describe().endswith("); using the Gemma template (by architecture gemma3).")


def test_raise_exception_becomes_template_error() -> None:
    template = file_template(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    )
    with pytest.raises(TemplateError, match="System role not supported") as info:
        render(template, CONVERSATION)
    assert info.value.cause == "the template refused the conversation: System role not supported"
    assert render(template, CONVERSATION[1:]) == ""


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="syntax error on line 2"):
        render(file_template("ok\n{% for %}"), CONVERSATION)


def test_hf_helpers() -> None:
    template = file_template(
        "{{ messages | tojson }}|{{ strftime_now('%Y') | length }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|"
        "{% generation %}{{ messages[-1].content }}{% endgeneration %}|{{ tools is none }}"
    )
    assert render(template, [{"role": "user", "content": "<é>"}]) == (
        '[{"role": "user", "content": "<é>"}]|4|user|<é>|True'
    )


def test_trim_blocks_like_hugging_face() -> None:
    # HF renders with trim_blocks and lstrip_blocks: block tags leave no newlines or indentation.
    template = file_template(
        "{% for m in messages %}\n    {% if m.role == 'user' %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}"
    )
    assert render(template, CONVERSATION) == "[Hi]\n[Bye]\n"


def words(text: str) -> int:
    return len(text.split())


def test_trim_history_drops_oldest_pairs() -> None:
    messages = [SYSTEM]
    for i in range(5):
        messages += [
            {"role": "user", "content": f"question {i} " + "w " * 10},
            {"role": "assistant", "content": f"answer {i} " + "w " * 10},
        ]
    messages.append({"role": "user", "content": "latest"})
    template = builtin("ChatML")
    full = words(render(template, messages))
    kept, n_dropped = trim_history(messages, count_tokens=words, budget_tokens=full, template=template)
    assert (kept, n_dropped) == (messages, 0)

    budget = full - 20  # one pair (2 x 12 words) too many
    kept, n_dropped = trim_history(messages, count_tokens=words, budget_tokens=budget, template=template)
    assert n_dropped == 2
    assert kept == [SYSTEM, *messages[3:]]
    assert words(render(template, kept)) <= budget

    minimum = words(render(template, [SYSTEM, messages[-1]]))
    kept, n_dropped = trim_history(messages, count_tokens=words, budget_tokens=minimum, template=template)
    assert (kept, n_dropped) == ([SYSTEM, messages[-1]], 10)

    with pytest.raises(ContextOverflowError) as info:
        trim_history(messages, count_tokens=words, budget_tokens=minimum - 1, template=template)
    assert str(info.value) == (
        f"The system prompt and your message need {minimum} tokens, "
        f"but the context leaves room for {minimum - 1}."
    )
    assert info.value.hint is not None and "larger context" in info.value.hint


def test_trim_history_keeps_a_leading_assistant_turn_whole() -> None:
    messages = [
        {"role": "assistant", "content": "Welcome!"},
        {"role": "user", "content": "a b c"},
        {"role": "assistant", "content": "d e f"},
        {"role": "user", "content": "latest"},
    ]
    template = builtin("Gemma")
    budget = words(render(template, messages[1:]))
    kept, n_dropped = trim_history(messages, count_tokens=words, budget_tokens=budget, template=template)
    assert (kept, n_dropped) == (messages[1:], 1)

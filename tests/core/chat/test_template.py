"""Which template a model gets: the real files' own template, the built-in fallback table, named variants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.chat.render import render
from app.core.chat.template import builtin_for, select_template
from app.core.model.gguf_header import read_gguf_file
from tests.core.chat.samples import SYSTEM


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

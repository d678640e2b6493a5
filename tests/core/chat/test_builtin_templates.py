"""The built-in templates: each family's published format, and agreement with llama.cpp's own formatter."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

from app.core.chat.render import render
from app.core.chat.template import select_template
from app.core.model.gguf_header import read_gguf_file
from tests.core.chat.samples import CONVERSATION, EXPECTED, builtin


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

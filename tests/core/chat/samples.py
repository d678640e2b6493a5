"""What the chat tests share: a stored conversation's plan and settings, and prompts with their expected text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.chat.builtin_templates import BUILTIN_TEMPLATES
from app.core.chat.store import ChatStore, Conversation
from app.core.chat.template import ChatTemplate, select_template

PLAN = {"n_ctx": 4096, "n_gpu_layers": 99, "type_k": "f16", "quant": "Q4_K_M", "vram_bytes": 3 << 29}
SETTINGS = {"system_prompt": "Be brief.", "temperature": 0.7, "top_p": 0.95, "seed": 42, "stop": ["</s>"]}
TIMINGS = {"ttft_ms": 120.5, "prompt_tok_s": 850.0, "gen_tok_s": 42.1, "n_gen_tokens": 17}

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


def new_conversation(store: ChatStore, title: str = "Chat") -> Conversation:
    return store.create_conversation(title=title, model="smollm2-135m-instruct", plan=PLAN, settings=SETTINGS)


def sql(db: Path, query: str) -> list[tuple[object, ...]]:
    """Look at the file with a plain connection, as another program would."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()

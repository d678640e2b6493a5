"""Which chat template a model gets: the file's own, or a built-in chosen by architecture and name.

A GGUF usually carries its own Jinja chat template (``tokenizer.chat_template``). When the file
has none, or its template fails, a built-in one is chosen by architecture and name, and
``ChatTemplate.describe()`` tells the user which. Rendering (in a sandbox: a downloaded template
is untrusted input) is :mod:`app.core.chat.render`; trimming a long history to the context is
:mod:`app.core.chat.trim`; both are offered here too, so one import serves a chat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.core.chat.builtin_templates import BUILTIN_TEMPLATES
from app.core.chat.render import render, render_with_fallback
from app.core.chat.trim import trim_history

__all__ = [
    "BUILTIN_TEMPLATES",
    "ChatTemplate",
    "Message",
    "builtin_for",
    "render",
    "render_with_fallback",
    "select_template",
    "trim_history",
]

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
TemplateSource = Literal["gguf", "fallback"]

TEMPLATE_KEY = "tokenizer.chat_template"
# convert_hf_to_gguf.py writes HF's named templates as `tokenizer.chat_template.<name>` and their
# names as this list; HF calls the one to use when none is asked for "default".
TEMPLATE_NAMES_KEY = "tokenizer.chat_templates"

# End-of-turn markers of the common template families (llama.cpp src/llama-chat.cpp); a file's
# template that writes one ends its turns with it, so generation stops there.
_TURN_END_MARKERS = (
    "<|im_end|>",  # ChatML: Qwen, SmolLM, Hermes
    "<end_of_turn>",  # Gemma
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3.1 tool calls
    "<|end|>",  # Phi-3
    "<|END_OF_TURN_TOKEN|>",  # Command-R
    "<｜end▁of▁sentence｜>",  # DeepSeek V3/R1
)


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template, where it came from, and the text that ends a model turn."""

    name: str  # "from the model file", or a built-in family: "ChatML", "Gemma", ...
    source: TemplateSource
    jinja: str
    stop_strings: tuple[str, ...]
    why: str = ""  # for fallbacks: why the file's template is not used
    chosen_by: str = ""  # for fallbacks: "by architecture gemma3"
    fallback: ChatTemplate | None = None  # for the file's template: what to use if it fails

    def describe(self) -> str:
        """One sentence for the UI saying which template is used and why."""
        if self.source == "gguf":
            return f"Using the chat template {self.name}."
        return f"{self.why}; using the {self.name} template ({self.chosen_by})."

    @property
    def label(self) -> str:
        return (
            f"the chat template {self.name}"
            if self.source == "gguf"
            else f"the built-in {self.name} template"
        )


# Architectures (llama.cpp src/llama-arch.cpp names) whose chat models speak ChatML.
_CHATML_ARCHS = frozenset(
    {"qwen", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "smollm3", "internlm2", "minicpm", "olmoe"}
)


def select_template(
    metadata: Mapping[str, Any], *, architecture: str | None = None, name_hint: str | None = None
) -> ChatTemplate:
    """The file's own chat template when it has one, else a built-in chosen by architecture and name."""
    fallback = builtin_for(metadata, architecture=architecture, name_hint=name_hint)
    found = _file_template(metadata)
    if found is None:
        return fallback
    variant, jinja = found
    name = "from the model file" if variant is None else f"'{variant}' from the model file"
    stops = tuple(m for m in _TURN_END_MARKERS if m in jinja)
    return ChatTemplate(name, "gguf", jinja, stops, fallback=fallback)


def _file_template(metadata: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """(variant name or None for the default, Jinja source) of the file's preferred template."""
    default = metadata.get(TEMPLATE_KEY)
    if isinstance(default, str) and default.strip():
        return None, default
    listed = metadata.get(TEMPLATE_NAMES_KEY)
    names = [n for n in listed if isinstance(n, str)] if isinstance(listed, list) else []
    prefix = TEMPLATE_KEY + "."
    names += sorted(k.removeprefix(prefix) for k in metadata if k.startswith(prefix))
    names.sort(key=lambda n: n != "default")  # stable: "default" first, else the file's order
    for variant in names:
        jinja = metadata.get(prefix + variant)
        if isinstance(jinja, str) and jinja.strip():
            return variant, jinja
    return None


def builtin_for(
    metadata: Mapping[str, Any], *, architecture: str | None = None, name_hint: str | None = None
) -> ChatTemplate:
    """The built-in template for this architecture and model name (ChatML when unknown)."""
    arch = (architecture or str(metadata.get("general.architecture") or "")).lower()
    if name_hint is None:
        parts = (metadata.get(k) for k in ("general.name", "general.basename", "general.finetune"))
        name_hint = " ".join(p for p in parts if isinstance(p, str))
    name = name_hint.lower().replace("_", "-")
    by_arch = f"by architecture {arch}"
    family: str
    if arch.startswith("gemma"):
        family, chosen_by = "Gemma", by_arch
    elif arch == "phi3":
        family, chosen_by = "Phi-3", by_arch
    elif arch in _CHATML_ARCHS:
        family, chosen_by = "ChatML", by_arch
    elif arch.startswith("mistral"):
        family, chosen_by = "Mistral", by_arch
    elif arch == "llama" and metadata.get("tokenizer.ggml.pre") in ("llama-bpe", "llama3"):
        # llama.cpp's names for Llama 3's BPE pre-tokenizer (src/llama-vocab.cpp).
        family, chosen_by = "Llama 3", "by architecture llama and its Llama 3 tokenizer"
    elif arch == "llama" and (family_by_name := _llama_family_by_name(name)) is not None:
        family, chosen_by = family_by_name, f"by architecture llama and the name '{name_hint}'"
    elif arch:
        family, chosen_by = "ChatML", f"the common default; nothing known for architecture {arch}"
    else:
        family, chosen_by = "ChatML", "the common default; the file names no architecture"
    jinja, stops = BUILTIN_TEMPLATES[family]
    return ChatTemplate(family, "fallback", jinja, stops, "No chat template in the file", chosen_by)


def _llama_family_by_name(name: str) -> str | None:
    # Zephyr before Mistral: zephyr-7b is a Mistral fine-tune with its own format.
    if any(s in name for s in ("llama-3", "llama 3", "llama3")):
        return "Llama 3"
    if any(s in name for s in ("zephyr", "tinyllama")):
        return "Zephyr"
    if any(s in name for s in ("mistral", "mixtral")):
        return "Mistral"
    if any(s in name for s in ("llama-2", "llama 2", "llama2")):
        return "Llama 2"
    return None

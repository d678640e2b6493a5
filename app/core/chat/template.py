"""Turn a conversation into the prompt text a model was trained on.

A GGUF usually carries its own Jinja chat template (``tokenizer.chat_template``); we render it the
way Hugging Face's ``apply_chat_template`` does, in a sandbox, because a downloaded file is
untrusted input. When the file has no template, or its template fails, a built-in one is chosen
by architecture and name, and ``ChatTemplate.describe()`` tells the user which.

The rendered text already holds the special tokens the template writes (``bos_token`` included),
so the engine tokenizes it with ``add_special=False, parse_special=True``.

The sandbox blocks escapes (Python internals, attribute writes, files: there is no loader for
``{% include %}``); it does not bound CPU or memory, so a hostile template can still build a huge
string. Render where such a failure ends one chat, not the app (the engine's child process).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.errors import TailorError

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


class TemplateError(TailorError):
    """A chat template could not turn the conversation into a prompt."""

    def __init__(self, message: str, *, cause: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.cause = cause


class ContextOverflowError(TailorError):
    """Even the system prompt and the latest message do not fit in the context."""


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


# The built-in templates follow each family's published Hugging Face template (and agree with
# llama.cpp's llm_chat_apply_template), simplified to text-only content.
_CHATML = r"""
{%- for message in messages %}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
"""

# google/gemma-3-*-it: no system role; the system prompt opens the first user turn.
_GEMMA = r"""
{{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set first_user_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}
{{- '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}
{{- message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}
"""

# meta-llama/Meta-Llama-3-8B-Instruct
_LLAMA_3 = r"""
{{- bos_token }}
{%- for message in messages %}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}
"""

# meta-llama/Llama-2-7b-chat-hf (Meta's llama/generation.py): <<SYS>> inside the first [INST].
_LLAMA_2 = r"""
{%- if messages and messages[0]['role'] == 'system' %}
{%- set system_prefix = '<<SYS>>\n' + messages[0]['content'] | trim + '\n<</SYS>>\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set system_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'user' %}
{{- bos_token + '[INST] ' + (system_prefix if loop.first else '') + message['content'] | trim + ' [/INST]' }}
{%- else %}
{{- ' ' + message['content'] | trim + ' ' + eos_token }}
{%- endif %}
{%- endfor %}
"""

# Mistral's v3 format (llama.cpp "mistral-v3"), the system prompt folded into the first [INST].
_MISTRAL = r"""
{{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
{%- set system_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}
{%- else %}
{%- set system_prefix = '' %}{% set loop_messages = messages %}
{%- endif %}
{%- for message in loop_messages %}
{%- if message['role'] == 'user' %}
{{- '[INST] ' + (system_prefix if loop.first else '') + message['content'] + '[/INST]' }}
{%- else %}
{{- ' ' + message['content'] | trim + eos_token }}
{%- endif %}
{%- endfor %}
"""

# microsoft/Phi-3-mini-4k-instruct
_PHI_3 = r"""
{%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}
"""

# HuggingFaceH4/zephyr-7b-beta (also TinyLlama-Chat)
_ZEPHYR = r"""
{%- for message in messages %}
{{- '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}
"""

BUILTIN_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ChatML": (_CHATML, ("<|im_end|>",)),
    "Gemma": (_GEMMA, ("<end_of_turn>",)),
    "Llama 3": (_LLAMA_3, ("<|eot_id|>",)),
    # [INST] too: a model that starts writing the user's next turn has finished its own.
    "Llama 2": (_LLAMA_2, ("</s>", "[INST]")),
    "Mistral": (_MISTRAL, ("</s>", "[INST]")),
    "Phi-3": (_PHI_3, ("<|end|>",)),
    "Zephyr": (_ZEPHYR, ("</s>", "<|user|>")),
}

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


class _TemplateRaised(Exception):
    """raise_exception() was called by the template itself."""


def _raise_exception(message: str) -> NoReturn:
    raise _TemplateRaised(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # HF's tojson: plain json.dumps, not Jinja's HTML-escaping one (it would turn "<" into \u003c).
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationTag(Extension):
    """HF's ``{% generation %}`` marks assistant text for training masks; at inference it is a no-op."""

    tags = {"generation"}  # noqa: RUF012 (jinja2's Extension declares it a plain class attribute)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Sandbox(ImmutableSandboxedEnvironment):
    """No attribute writes, no ``_private`` attributes, no loader; reaching for internals fails loudly."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        # Jinja's default renders `{{ x.__init__ }}` as "": we would rather refuse the template.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe")


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    # The options and helpers of HF's apply_chat_template (transformers utils/chat_template_utils.py).
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=16)
def _compile(jinja: str) -> jinja2.Template:
    # Compiling a 10 kB template takes milliseconds; trim_history renders the same one many times.
    return _environment().from_string(jinja)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, _TemplateRaised):
        return f"the template refused the conversation: {exc}"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error on line {exc.lineno}: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"blocked by the sandbox: {exc}"
    return f"{type(exc).__name__}: {exc}"


def render(
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages``; raises ``TemplateError`` naming the template and the cause."""
    try:
        return _compile(template.jinja).render(
            messages=[dict(m) for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            tools=None,  # HF passes these even when unused; templates test them
            documents=None,
        )
    except Exception as exc:  # an untrusted template can fail in any way; all of them mean "unusable"
        cause = _cause(exc)
        if template.fallback is not None:
            hint = f"TailorLM can use its built-in {template.fallback.name} template instead."
        else:
            hint = "Check the conversation's roles (system, user, assistant); if they are right, please report this."
        raise TemplateError(
            f"{template.label[0].upper()}{template.label[1:]} could not format the conversation: {cause}.",
            cause=cause,
            hint=hint,
        ) from exc


def render_with_fallback(
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> tuple[str, ChatTemplate]:
    """Render with ``template``, or with its built-in fallback if it fails; returns the one used."""
    kwargs: dict[str, Any] = {
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    try:
        return render(template, messages, **kwargs), template
    except TemplateError as err:
        if template.fallback is None:
            raise
        used = replace(template.fallback, why=f"The file's chat template failed ({err.cause})")
        return render(used, messages, **kwargs), used


def trim_history(
    messages: Sequence[Message],
    *,
    count_tokens: Callable[[str], int],
    budget_tokens: int,
    template: ChatTemplate,
    bos_token: str = "",
    eos_token: str = "",
) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns until the prompt fits; returns (kept messages, number of messages dropped).

    Leading system messages and everything from the latest user message on are always kept; the
    turns between go whole (a user message with the replies that follow it), oldest first.
    """
    n_head = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=n_head)
    last_user = max(last_user, n_head)
    head, history, tail = messages[:n_head], messages[n_head:last_user], messages[last_user:]
    # Where dropping k turns cuts `history`: k = 0 keeps it all, the last entry drops it all.
    cuts = [0, *(i for i, m in enumerate(history) if i > 0 and m.get("role") == "user"), len(history)]

    def prompt_tokens(k: int) -> int:
        kept = [*head, *history[cuts[k] :], *tail]
        return count_tokens(render(template, kept, bos_token=bos_token, eos_token=eos_token))

    def kept(k: int) -> tuple[list[dict[str, str]], int]:
        return [dict(m) for m in (*head, *history[cuts[k] :], *tail)], cuts[k]

    if prompt_tokens(0) <= budget_tokens:
        return kept(0)
    n_min = prompt_tokens(len(cuts) - 1)
    if n_min > budget_tokens:
        raise ContextOverflowError(
            f"The system prompt and your message need {n_min} tokens, but the context leaves room "
            f"for {budget_tokens}.",
            hint="Load the model with a larger context, or shorten the message or the system prompt.",
        )
    # Fewer turns never make a longer prompt, so binary search: log2(turns) renders and counts
    # instead of one per turn, which matters once tokenizing a long history takes milliseconds.
    lo, hi = 0, len(cuts) - 1  # prompt_tokens(lo) > budget >= prompt_tokens(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prompt_tokens(mid) <= budget_tokens:
            hi = mid
        else:
            lo = mid
    return kept(hi)

"""Render a conversation with a chat template, in a sandbox: a GGUF's template is untrusted input.

We render the way Hugging Face's ``apply_chat_template`` does (its options, ``tojson``,
``raise_exception``, ``strftime_now``, ``{% generation %}``). The rendered text already holds the
special tokens the template writes (``bos_token`` included), so the engine tokenizes it with
special tokens parsed and drops the BOS the vocabulary adds when the template wrote one too.

The sandbox blocks escapes (Python internals, attribute writes, files: there is no loader for
``{% include %}``); it does not bound CPU or memory, so a hostile template can still build a huge
string in the process that renders it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.errors import TemplateError

if TYPE_CHECKING:  # template.py imports this module to offer render() beside select_template()
    from app.core.chat.template import ChatTemplate, Message


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

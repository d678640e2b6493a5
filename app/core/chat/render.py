"""Render a conversation with a chat template, in a sandbox: a GGUF's template is untrusted input.

We render the way Hugging Face's ``apply_chat_template`` does (its options, ``tojson``,
``raise_exception``, ``strftime_now``, ``{% generation %}``). The rendered text already holds the
special tokens the template writes (``bos_token`` included), so the engine tokenizes it with
special tokens parsed and drops the BOS the vocabulary adds when the template wrote one too.

The sandbox blocks escapes (Python internals, attribute writes, files: there is no loader for
``{% include %}``) and refuses the cheap ways to make a huge string: ``lipsum`` is gone, ``*``,
``%`` and ``**`` are checked before they run, ``tojson``'s indent is capped, and the output stops
at ``max_chars``. That is not a bound on time or memory — nested loops or a string doubled in a
``{% set %}`` still run unbounded in the process that renders — so the app renders files'
templates in a child process of their own with a memory limit and a deadline
(:mod:`app.engine.renderer`); this module is what that process runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.errors import TemplateError

if TYPE_CHECKING:  # template.py imports this module to offer render() beside select_template()
    from app.core.chat.template import ChatTemplate, Message


# Bounds on single operations, far above what any chat template does (they join a few strings and
# repeat nothing wider than a line) and far below what would take seconds or gigabytes.
MAX_OP_CHARS = 1 << 20  # a string or list made by one `*` or a `%` field width
MAX_POWER_BITS = 4096  # `a ** b` whose result would need more bits than this
MAX_JSON_INDENT = 16
_PERCENT_WIDTHS = re.compile(r"%[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


class _TemplateRaised(Exception):
    """raise_exception() was called by the template itself."""


class _TooBig(Exception):
    """An operation or the output would exceed the bounds above."""


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
    if isinstance(indent, int) and indent > MAX_JSON_INDENT:
        raise _TooBig(f"tojson with an indent of {indent}")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationTag(Extension):
    """HF's ``{% generation %}`` marks assistant text for training masks; at inference it is a no-op."""

    tags = {"generation"}  # noqa: RUF012 (jinja2's Extension declares it a plain class attribute)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _too_big(operator: str, left: Any, right: Any) -> str:
    """What ``left operator right`` would build that is too big for a prompt; "" when it is fine."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_OP_CHARS:
                return f"a {type(seq).__name__} repeated {n:,} times"
    elif operator == "%" and isinstance(left, str):
        for width, precision in _PERCENT_WIDTHS.findall(left):
            if any(v.isdigit() and int(v) > MAX_OP_CHARS for v in (width, precision)):
                return f"a %-format field {width or precision} characters wide"
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        bits = right * max(abs(left).bit_length() - 1, 0)  # about log2 of the result
        return f"{left} ** {right}" if bits > MAX_POWER_BITS else ""
    return ""


class _Sandbox(ImmutableSandboxedEnvironment):
    """No attribute writes, no ``_private`` attributes, no loader; reaching for internals fails
    loudly; ``*``, ``%`` and ``**`` refuse results too big to be a prompt."""

    intercepted_binops = frozenset({"*", "%", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        too_big = _too_big(operator, left, right)
        if too_big:
            raise _TooBig(too_big)
        return super().call_binop(context, operator, left, right)

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
    del env.globals["lipsum"]  # paragraphs of lorem ipsum: never needed, and n=10**7 is gigabytes
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
    if isinstance(exc, _TooBig):
        return f"it tried to build something too big for a prompt ({exc})"
    if isinstance(exc, MemoryError):
        return "it ran out of the memory allowed for a template"
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    return f"{type(exc).__name__}: {exc}"


class RenderFailed(Exception):
    """The template could not render; ``cause`` says why in a few words."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def prompt_char_limit(messages: Sequence[Message]) -> int:
    """The longest prompt a template may write for ``messages``: twice their text plus room for
    each turn's markers and a long system preamble. Real templates add tens of characters per turn."""
    content = sum(len(str(m.get("content", ""))) for m in messages)
    return 2 * content + 4096 * len(messages) + (1 << 20)


def render_text(
    jinja: str,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    max_chars: int | None = None,
) -> str:
    """Render ``jinja`` for ``messages`` in the sandbox; raise :class:`RenderFailed` with the cause.
    The output stops at ``max_chars`` (default :func:`prompt_char_limit`)."""
    limit = prompt_char_limit(messages) if max_chars is None else max_chars
    try:
        pieces: list[str] = []
        n = 0
        for piece in _compile(jinja).generate(
            messages=[dict(m) for m in messages],
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            tools=None,  # HF passes these even when unused; templates test them
            documents=None,
        ):
            n += len(piece)
            if n > limit:
                raise _TooBig(f"a prompt over {limit:,} characters")
            pieces.append(piece)
        return "".join(pieces)
    except Exception as exc:  # an untrusted template can fail in any way; all of them mean "unusable"
        raise RenderFailed(_cause(exc)) from exc  # MemoryError too, under the renderer's limit


def template_error(template: ChatTemplate, cause: str) -> TemplateError:
    """The user's error for ``template`` failing with ``cause``, and what TailorLM can do instead."""
    if template.fallback is not None:
        hint = f"TailorLM can use its built-in {template.fallback.name} template instead."
    else:
        hint = (
            "Check the conversation's roles (system, user, assistant); if they are right, please report this."
        )
    return TemplateError(
        f"{template.label[0].upper()}{template.label[1:]} could not format the conversation: {cause}.",
        cause=cause,
        hint=hint,
    )


class Renderer(Protocol):
    """Something that renders a template: :func:`render` here, or the renderer process."""

    def __call__(
        self,
        template: ChatTemplate,
        messages: Sequence[Message],
        *,
        bos_token: str = "",
        eos_token: str = "",
        add_generation_prompt: bool = True,
    ) -> str: ...


def render(
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages``, rendered in this process; raises ``TemplateError``
    naming the template and the cause. For built-in templates and tests: a file's template runs
    in the renderer process (:mod:`app.engine.renderer`)."""
    try:
        return render_text(template.jinja, messages, bos_token=bos_token, eos_token=eos_token,
                           add_generation_prompt=add_generation_prompt)  # fmt: skip
    except RenderFailed as exc:
        raise template_error(template, exc.cause) from exc


def with_fallback(template: ChatTemplate, err: TemplateError) -> ChatTemplate | None:
    """The template to use after ``template`` failed with ``err`` (its built-in fallback, saying
    why), or None when it has none."""
    if template.fallback is None:
        return None
    return replace(template.fallback, why=f"The file's chat template failed ({err.cause})")


def render_with_fallback(
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    renderer: Renderer = render,
) -> tuple[str, ChatTemplate]:
    """Render with ``template``, or with its built-in fallback if it fails; returns the one used."""
    kwargs: dict[str, Any] = {
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    try:
        return renderer(template, messages, **kwargs), template
    except TemplateError as err:
        used = with_fallback(template, err)
        if used is None:
            raise
        return renderer(used, messages, **kwargs), used

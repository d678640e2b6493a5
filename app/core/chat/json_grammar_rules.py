"""GBNF building blocks of the JSON grammars: the shared primitive rules (whitespace, strings,
numbers, any JSON value), literals, repetitions, rule names, and object and array bodies made
from the rules of their parts. Nothing here reads a schema: that is json_grammar's work.

The shared rules all start with ``json-`` and have fixed bodies, so the rules of several schemas
(one per tool, say) can be merged into one grammar. The syntax is llama.cpp's GBNF
(llama.cpp grammars/README.md; parsed by src/llama-grammar.cpp).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

SHARED_PREFIX = "json-"

# Whitespace between tokens: one blank, or a newline and an indent of up to 32 columns (16 levels
# of two-space pretty-printing). Unbounded whitespace lets a small model loop on spaces forever.
INDENT_MAX = 32
# A double carries 15-17 significant decimal digits (IEEE 754 binary64) and its exponent stays
# within ±308: longer numbers are noise, and unbounded ones another way to never stop.
INT_DIGITS_MAX = 16
FRACTION_DIGITS_MAX = 16
EXPONENT_DIGITS_MAX = 3
# A long rule name is no help to a reader; uniqueness comes from a counter (see _Builder.reserve).
NAME_MAX = 48

_HEX = "[0-9a-fA-F]"
SHARED_RULES: dict[str, str] = {
    "json-ws": rf'( [ \t] | "\n" [ \t]{{0,{INDENT_MAX}}} )?',
    # Any character but a quote, a backslash or a control character (RFC 8259 §7), or an escape.
    "json-char": r'[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" ' + f"{_HEX}{{4}} )",
    # The same, less escaped high surrogates (\uD800-\uDBFF): a pair of escapes makes one code
    # point, so counting escapes would count a pair twice against minLength/maxLength.
    "json-char-counted": r'[^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" '
    + f"( [0-9a-cA-Ce-fE-F] {_HEX}{{3}} | [dD] [0-7c-fC-F] {_HEX}{{2}} ) )",
    "json-string": r'"\"" json-char* "\""',
    "json-integer": f'"-"? ( "0" | [1-9] [0-9]{{0,{INT_DIGITS_MAX - 1}}} )',
    "json-number": f'json-integer ( "." [0-9]{{1,{FRACTION_DIGITS_MAX}}} )? '
    f"( [eE] [-+]? [0-9]{{1,{EXPONENT_DIGITS_MAX}}} )?",
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-value": "json-object | json-array | json-string | json-number | json-boolean | json-null",
    "json-member": 'json-string json-ws ":" json-ws json-value json-ws',
    "json-object": '"{" json-ws ( json-member ( "," json-ws json-member )* )? "}"',
    "json-array": '"[" json-ws ( json-value json-ws ( "," json-ws json-value json-ws )* )? "]"',
}

SEPARATOR = '"," json-ws'
ANY_VALUE = "json-value"
ANY_OBJECT = "json-object"

_LITERALS_AND_CLASSES = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]')
_IDENTIFIER = re.compile(r"[a-zA-Z0-9-]+")
_ATOM = re.compile(r'[a-zA-Z0-9-]+|"(?:[^"\\]|\\.)*"')
_NOT_NAME = re.compile(r"[^a-zA-Z0-9]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: object) -> str:
    """``value`` as compact JSON text; lone surrogates (which UTF-8 cannot carry) as ``\\uXXXX``.
    Raises ``ValueError`` or ``TypeError`` for what JSON cannot hold (NaN, sets, cycles)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def literal(text: str) -> str:
    """A GBNF string literal matching exactly ``text`` (JSON text: no raw control characters)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_atom(body: str) -> bool:
    """Whether ``body`` is one rule name or one literal, so it can be inlined anywhere."""
    return _ATOM.fullmatch(body) is not None


def repeat(expr: str, low: int, high: int | None) -> str:
    """``expr`` (an atom or a group) repeated ``low`` to ``high`` (None: unbounded) times."""
    if high == 0:
        return ""
    if high is None:
        suffix = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    elif (low, high) == (0, 1):
        suffix = "?"
    elif low == high:
        suffix = "" if low == 1 else f"{{{low}}}"
    else:
        suffix = f"{{{low},{high}}}"
    return expr + suffix


def name_part(text: str) -> str:
    """A rule-name fragment (letters, digits and dashes only) for a property or definition name."""
    return _NOT_NAME.sub("-", text).strip("-")[:NAME_MAX] or "x"


def with_shared(rules: dict[str, str]) -> dict[str, str]:
    """``rules`` plus every shared rule they use, directly or through another shared rule."""
    needed: set[str] = set()
    todo = list(rules.values())
    while todo:
        for name in _IDENTIFIER.findall(_LITERALS_AND_CLASSES.sub(" ", todo.pop())):
            if name in SHARED_RULES and name not in needed:
                needed.add(name)
                todo.append(SHARED_RULES[name])
    return {**rules, **{name: body for name, body in SHARED_RULES.items() if name in needed}}


def member(key: str, value: str) -> str:
    """An object member (``key`` and ``value`` are atoms) and the whitespace after it."""
    return f'{key} json-ws ":" json-ws {value} json-ws'


def object_rule(members: list[tuple[str, bool]], extra_value: str, named: Callable[[str, str], str]) -> str:
    """An object of ``members`` (each with whether it is required), in order, and after them any
    number of other members with values ``extra_value`` (an atom; "" for none). ``named(suffix,
    body)`` turns a body into an atom, so that a part used twice is written once."""
    # Built from the end: `rest` follows a member already written (each of its members comes after
    # a comma), `first` is where nothing was written yet (no comma before its first member).
    rest = first = ""
    if extra_value:
        extra = member("json-string", extra_value)
        rest = named("more", f"( {SEPARATOR} {extra} )*")
        first = f"( {extra} {rest} )?"
    first_required = next((i for i, (_, req) in enumerate(members) if req), len(members))
    for i in reversed(range(len(members))):
        text, req = members[i]
        if i <= first_required:  # `rest` goes into `first`, and into the next `rest` but at 0
            rest = named(f"after{i}", rest) if i else rest
            if req:
                first = f"{text} {rest}".strip()
            elif first:
                first = f"{text} {rest} | {first}"
            else:
                first = f"( {text} {rest} )?"
        rest = (f"{SEPARATOR} {text} {rest}" if req else f"( {SEPARATOR} {text} )? {rest}").strip()
    return f'"{{" json-ws ( {first} ) "}}"' if first else '"{" json-ws "}"'


def array_rule(heads: list[str], tail: str, low: int, high: int | None) -> str:
    """An array of ``low`` to ``high`` (None: any number of) items: the first ones ``heads``, the
    others ``tail`` ("" for none); all atoms, and ``heads`` no longer than ``high``."""
    more_high = None if high is None else high - len(heads)
    if not heads:  # the first item has no comma before it
        if not tail or more_high == 0:
            return '"[" json-ws "]"'
        after = repeat(f"( {SEPARATOR} {tail} json-ws )", max(low - 1, 0), None if high is None else high - 1)
        body = f"{tail} json-ws {after}".strip()
        return f'"[" json-ws ( {body} ){"?" if low == 0 else ""} "]"'
    after = repeat(f"( {SEPARATOR} {tail} json-ws )", max(low - len(heads), 0), more_high) if tail else ""
    for i in reversed(range(1, len(heads))):
        after = f"{SEPARATOR} {heads[i]} json-ws {after}".strip()
        after = f"( {after} )?" if i >= low else after  # `i` items are there already
    return f'"[" json-ws ( {heads[0]} json-ws {after} ){"?" if low == 0 else ""} "]"'


def grammar_text(rules: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{name} ::= {body}\n" for name, body in rules)

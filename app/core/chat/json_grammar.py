"""JSON Schema → llama.cpp GBNF grammar, so that sampling can only write JSON matching the schema.

The schema comes from strangers over HTTP (OpenAI's ``response_format`` and tool ``parameters``):
each keyword is checked, depth, size and repetition counts are bounded, and only local references
(``#``, ``#/$defs/NAME``, ``#/definitions/NAME``) are followed — nothing is fetched. Keywords the
grammar cannot enforce (``pattern``, ``minimum``, …) are listed in ``Grammar.ignored``, so the
caller can say so or validate the answer afterwards.

Choices where JSON Schema leaves room:

- Properties come in the order of ``properties``; without ``additionalProperties`` (or with
  ``false``) only they may appear, as OpenAI's strict mode wants. An object schema with neither
  ``properties`` nor ``additionalProperties`` allows any members. Extra members come last.
- A ``required`` name missing from ``properties`` is an extra member that must appear (with the
  ``additionalProperties`` schema), or a ``SchemaError`` where extra members are not allowed.
- ``anyOf``/``oneOf``/``allOf`` (of one schema) merge the keywords beside them into each branch
  (``properties`` and ``required`` are combined, other keywords of the branch win); ``oneOf`` is
  ``anyOf``: overlapping branches are not kept apart. Beside ``$ref``, keywords are ignored.
- ``const`` and ``enum`` are written as compact JSON text (``json.dumps(separators=(",", ":"))``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from app.core.chat.json_grammar_rules import (
    ANY_OBJECT,
    ANY_VALUE,
    SHARED_PREFIX,
    array_rule,
    grammar_text,
    is_atom,
    json_text,
    literal,
    member,
    name_part,
    object_rule,
    repeat,
    with_shared,
)
from app.core.errors import SchemaError as SchemaError  # raised here; callers may import it from here

# Nesting of schemas: real tool and answer shapes stay within a dozen levels, and the bound keeps
# the converter's recursion far from Python's limit (a few frames a level against 1,000).
MAX_DEPTH = 64
# Schemas visited (a branch merged with its siblings counts again): bounds the work per request.
MAX_NODES = 2_000
# minItems/maxItems/minLength/maxLength: llama.cpp expands x{m,n} into about n rules
# (src/llama-grammar.cpp, handle_repetitions), so large counts are a memory bomb in the model process.
MAX_REPEAT = 256
# ... and all the counts of one schema together, the same way (16 repetitions at the limit).
MAX_REPEAT_TOTAL = 4_096
MAX_ENUM = 1_000  # OpenAI's structured outputs allow 1,000 enum values in a schema; we, in an enum
# The model process parses the grammar for every request and keeps its rules for the answer; the
# largest grammar of our test corpus (tests/core/chat/test_json_grammar.py) is 1 KiB.
MAX_GRAMMAR_BYTES = 256 * 1024

TYPES = ("string", "number", "integer", "boolean", "null", "object", "array")
# Words that describe and do not constrain: fine anywhere, never reported.
ANNOTATIONS = frozenset(
    {"description", "title", "default", "examples", "$schema", "$id", "strict", "$comment"}
    | {"deprecated", "readOnly", "writeOnly"}
)
ENFORCED = frozenset(
    {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions"}
    | {"properties", "required", "additionalProperties", "items", "prefixItems"}
    | {"minItems", "maxItems", "minLength", "maxLength"}
)
_COMBINATORS = ("anyOf", "oneOf", "allOf")
# Without "type", the keywords present say which type is meant.
_IMPLIED_TYPE = (
    ("object", ("properties", "additionalProperties", "required")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("minLength", "maxLength")),
)


@dataclass(frozen=True)
class Grammar:
    text: str  # GBNF, start rule "root"
    ignored: tuple[str, ...]  # keywords present in the schema that the grammar does not enforce


def schema_grammar(schema: object) -> Grammar:
    """The grammar of JSON text that matches ``schema``; raises ``SchemaError``."""
    builder = _Builder(schema, "root")
    text = grammar_text(with_shared(builder.build()).items())
    if len(text.encode()) > MAX_GRAMMAR_BYTES:
        raise _error("", f"the grammar would be larger than {MAX_GRAMMAR_BYTES // 1024} KiB")
    return Grammar(text, tuple(sorted(builder.ignored)))


def any_json_object_grammar() -> Grammar:
    """The grammar of any JSON object (``response_format: {"type": "json_object"}``)."""
    return Grammar(grammar_text(with_shared({"root": ANY_OBJECT}).items()), ())


def value_rules(schema: object, prefix: str) -> tuple[str, dict[str, str]]:
    """The rules of a value matching ``schema``: (its rule name, {rule name: body}). The schema's
    own rules start with ``prefix``; the shared ones (``json-…``) have fixed bodies, so the rules
    of several prefixes merge safely when no prefix is another's followed by ``-``."""
    if not prefix or name_part(prefix) != prefix or prefix.startswith(SHARED_PREFIX.rstrip("-")):
        raise ValueError(f"bad rule prefix {prefix!r}")
    return prefix, with_shared(_Builder(schema, prefix).build())


def _error(pointer: str, problem: str) -> SchemaError:
    where = pointer if len(pointer) <= 200 else f"{pointer[:100]}…{pointer[-100:]}"
    return SchemaError(
        f"schema at {where or '/'}: {problem}",
        hint='Simplify the schema, or ask for {"type": "json_object"} and check the answer yourself.',
    )


def _escape(key: str) -> str:  # a JSON pointer segment (RFC 6901)
    return key.replace("~", "~0").replace("/", "~1")


def _count(schema: Mapping[str, object], pointer: str, key: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(f"{pointer}/{key}", f"{key} must be a non-negative integer")
    if value > MAX_REPEAT:
        raise _error(f"{pointer}/{key}", f"{key} {value} is over the limit of {MAX_REPEAT}")
    return value


def _check(schema: Mapping[str, object], pointer: str) -> None:
    """Every enforced keyword has the JSON type the specification gives it."""

    def bad(key: str, what: str) -> SchemaError:
        return _error(f"{pointer}/{key}", f"{key} must be {what}")

    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions") and not isinstance(value, dict):
            raise bad(key, "an object")
        if key in (*_COMBINATORS, "prefixItems", "enum") and not isinstance(value, list):
            raise bad(key, "a list")
        if key in (*_COMBINATORS, "enum") and not value:
            raise bad(key, "a non-empty list")
        if key in ("additionalProperties", "items") and not isinstance(value, (bool, dict)):
            raise bad(
                key,
                "a schema" + (" (for draft 7's list of items, use prefixItems)" if key == "items" else ""),
            )
        if key == "required" and not (isinstance(value, list) and all(isinstance(n, str) for n in value)):
            raise bad(key, "a list of property names")
        if key == "$ref" and not isinstance(value, str):
            raise bad(key, "a string")
    if len(cast("list[object]", schema.get("enum", []))) > MAX_ENUM:
        raise _error(f"{pointer}/enum", f"enum has more than {MAX_ENUM} values")
    if len(cast("list[object]", schema.get("allOf", [None]))) != 1:
        raise _error(f"{pointer}/allOf", "allOf with more than one schema is not supported")
    for low, high in (("minItems", "maxItems"), ("minLength", "maxLength")):
        lo, hi = _count(schema, pointer, low), _count(schema, pointer, high)
        if lo is not None and hi is not None and lo > hi:
            raise _error(f"{pointer}/{low}", f"{low} is larger than {high}")


def _types(schema: Mapping[str, object], pointer: str) -> list[str]:
    """The types ``schema`` allows, without ``number``'s subtype ``integer``; [] means any."""
    declared = schema.get("type")
    if declared is None:
        return next(([t] for t, keys in _IMPLIED_TYPE if any(k in schema for k in keys)), [])
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _error(f"{pointer}/type", "type must be a type name or a non-empty list of them")
    for name in names:
        if name not in TYPES:
            raise _error(f"{pointer}/type", f"unknown type {name[:40]!r}")
    if "number" in names:
        names = [n for n in names if n != "integer"]
    return list(dict.fromkeys(names))


def _merge(siblings: Mapping[str, object], branch: Mapping[str, object]) -> dict[str, object]:
    """``branch`` with the keywords beside its ``anyOf``; both ``properties`` and ``required`` count."""
    merged = {**siblings, **branch}
    mine, theirs = siblings.get("properties"), branch.get("properties")
    if isinstance(mine, dict) and isinstance(theirs, dict):
        merged["properties"] = {**mine, **theirs}
    mine, theirs = siblings.get("required"), branch.get("required")
    if isinstance(mine, list) and isinstance(theirs, list):
        merged["required"] = [*mine, *theirs]
    return merged


class _Builder:
    """Walks one schema and collects its rules; rule names start with ``prefix``."""

    def __init__(self, root: object, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self.rules: dict[str, str] = {}
        self.size = 0
        self.nodes = 0
        self.repeats = 0
        self.ignored: set[str] = set()
        self.refs: dict[str, str] = {"#": prefix}  # reference → its rule
        # References being resolved since the last "{" or "[": meeting one again means a rule that
        # would start with itself, which llama.cpp rejects (left recursion) and which never ends.
        self.open_refs: set[str] = {"#"}

    def build(self) -> dict[str, str]:
        self.rules[self.prefix] = ""
        self.define(self.prefix, self.visit(self.root, "", self.prefix, 0))
        return self.rules

    def reserve(self, hint: str) -> str:
        base = hint if len(hint) <= 48 else f"{self.prefix}-{hint.rsplit('-', 1)[-1]}"
        name, n = base, 1
        while name in self.rules:
            n += 1
            name = f"{base}-{n}"
        self.rules[name] = ""
        return name

    def define(self, name: str, body: str) -> None:
        self.rules[name] = body
        self.size += len(name) + len(body) + 6
        if self.size > MAX_GRAMMAR_BYTES:
            raise _error("", f"the grammar would be larger than {MAX_GRAMMAR_BYTES // 1024} KiB")

    def named(self, hint: str, body: str) -> str:
        """``body`` as something a sequence can hold: itself if an atom (or empty), else a rule."""
        if not body or is_atom(body):
            return body
        name = self.reserve(hint)
        self.define(name, body)
        return name

    def spend(self, low: int, high: int | None, pointer: str) -> None:
        """Counts the rules llama.cpp expands a repetition into (see MAX_REPEAT)."""
        self.repeats += low if high is None else high
        if self.repeats > MAX_REPEAT_TOTAL:
            raise _error(pointer, f"the schema's repetition counts add up to more than {MAX_REPEAT_TOTAL}")

    def part(self, schema: object, pointer: str, hint: str, depth: int) -> str:
        """A sub-schema's value as an atom for a sequence."""
        return self.named(hint, self.visit(schema, pointer, hint, depth + 1))

    def visit(self, schema: object, pointer: str, hint: str, depth: int) -> str:
        """The body of a rule matching ``schema``: alternatives of sequences."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _error(pointer, f"the schema has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise _error(pointer, f"the schema is nested more than {MAX_DEPTH} levels deep")
        if schema is True:
            return ANY_VALUE
        if schema is False:
            raise _error(pointer, "false allows no value, so nothing can be written")
        if not isinstance(schema, dict) or not all(isinstance(k, str) for k in schema):
            raise _error(pointer, "a schema must be an object or a boolean")
        _check(schema, pointer)
        self.ignored.update(k for k in schema if k not in ANNOTATIONS and k not in ENFORCED)
        if "$ref" in schema:
            self.ignored.update(k for k in schema if k in ENFORCED - {"$ref", "$defs", "definitions"})
            return self.ref(cast("str", schema["$ref"]), f"{pointer}/$ref", depth)
        for key in _COMBINATORS:
            if key in schema:
                return self.union(schema, key, pointer, hint, depth)
        if "const" in schema:
            return self.constant(schema["const"], f"{pointer}/const")
        if "enum" in schema:
            values = cast("list[object]", schema["enum"])
            texts = (self.constant(v, f"{pointer}/enum/{i}") for i, v in enumerate(values))
            return " | ".join(dict.fromkeys(texts))
        alternatives = [self.typed(t, schema, pointer, hint, depth) for t in _types(schema, pointer)]
        return " | ".join(dict.fromkeys(alternatives)) or ANY_VALUE

    def constant(self, value: object, pointer: str) -> str:
        try:
            return literal(json_text(value))
        except (TypeError, ValueError, RecursionError) as exc:
            raise _error(pointer, "the value is not JSON (NaN, Infinity or a cycle?)") from exc

    def union(self, schema: Mapping[str, object], key: str, pointer: str, hint: str, depth: int) -> str:
        siblings = {k: v for k, v in schema.items() if k != key}
        alternatives: dict[str, None] = {}
        for i, branch in enumerate(cast("list[object]", schema[key])):
            merged = _merge(siblings, branch) if isinstance(branch, dict) else branch
            if branch is True and siblings:
                merged = siblings
            alternatives[self.visit(merged, f"{pointer}/{key}/{i}", f"{hint}-{i}", depth + 1)] = None
        return " | ".join(alternatives)

    def ref(self, ref: str, pointer: str, depth: int) -> str:
        if ref in self.open_refs:
            raise _error(pointer, f"{ref[:100]!r} contains itself before any object or array")
        if ref in self.refs:
            return self.refs[ref]
        parts = ref.split("/")
        if len(parts) != 3 or parts[0] != "#" or parts[1] not in ("$defs", "definitions"):
            raise _error(
                pointer, f"only #, #/$defs/NAME and #/definitions/NAME are supported, not {ref[:100]!r}"
            )
        defs = self.root.get(parts[1]) if isinstance(self.root, dict) else None
        key = parts[2].replace("~1", "/").replace("~0", "~")
        if not isinstance(defs, dict) or key not in defs:
            raise _error(pointer, f"{ref[:100]!r} names no definition")
        name = self.refs[ref] = self.reserve(f"{self.prefix}-{name_part(key)}")
        self.open_refs.add(ref)
        self.define(name, self.visit(defs[key], f"/{parts[1]}/{_escape(key)}", name, depth + 1))
        self.open_refs.discard(ref)
        return name

    def typed(self, kind: str, schema: Mapping[str, object], pointer: str, hint: str, depth: int) -> str:
        if kind in ("object", "array"):
            outer, self.open_refs = self.open_refs, set()  # "{" and "[" come before any member
            build = self.object_body if kind == "object" else self.array_body
            body = build(schema, pointer, hint, depth)
            self.open_refs = outer
            return body
        if kind != "string":
            return SHARED_PREFIX + kind
        low, high = _count(schema, pointer, "minLength") or 0, _count(schema, pointer, "maxLength")
        if (low, high) == (0, None):
            return "json-string"
        self.spend(low, high, pointer)
        return f'"\\"" {repeat("json-char-counted", low, high)} "\\""'

    def object_body(self, schema: Mapping[str, object], pointer: str, hint: str, depth: int) -> str:
        properties = cast("dict[str, object]", schema.get("properties", {}))
        required = cast("list[str]", schema.get("required", []))
        extra = schema.get("additionalProperties", "properties" not in schema)
        members: list[tuple[str, bool]] = []  # (member with its trailing whitespace, required)
        for key, sub in properties.items():
            value = self.part(sub, f"{pointer}/properties/{_escape(key)}", f"{hint}-{name_part(key)}", depth)
            members.append((member(literal(json_text(key)), value), key in required))
        extra_value = ""
        if extra is not False:
            extra_value = self.part(extra, f"{pointer}/additionalProperties", f"{hint}-extra", depth)
        for key in dict.fromkeys(k for k in required if k not in properties):
            if not extra_value:
                raise _error(f"{pointer}/required", f"{key[:100]!r} is required but not in properties")
            members.append((member(literal(json_text(key)), extra_value), True))
        if not members and extra_value == ANY_VALUE:
            return ANY_OBJECT
        return object_rule(members, extra_value, lambda suffix, body: self.named(f"{hint}-{suffix}", body))

    def array_body(self, schema: Mapping[str, object], pointer: str, hint: str, depth: int) -> str:
        low, high = _count(schema, pointer, "minItems") or 0, _count(schema, pointer, "maxItems")
        prefix_items = cast("list[object]", schema.get("prefixItems", []))
        heads = [
            self.part(sub, f"{pointer}/prefixItems/{i}", f"{hint}-{i}", depth)
            for i, sub in enumerate(prefix_items)
        ]
        items = schema.get("items", True)
        tail = "" if items is False else self.part(items, f"{pointer}/items", f"{hint}-item", depth)
        if items is False and (high is None or high > len(heads)):
            high = len(heads)
            if low > high:
                raise _error(f"{pointer}/minItems", "minItems asks for more items than prefixItems allow")
        self.spend(low, high, pointer)
        return array_rule(heads if high is None else heads[:high], tail, low, high)

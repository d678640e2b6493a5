"""JSON Schema → GBNF: llama.cpp accepts every grammar, random walks under it write JSON that
json.loads reads and jsonschema accepts, and bad or oversized schemas are refused with a pointer.

The walks use SmolLM2's real vocabulary (vocab only, no weights) with random logits: the grammar,
not a model's taste, decides what can be written, which is what we test.
"""

from __future__ import annotations

import copy
import ctypes
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp as L
import numpy as np
import pytest

from app.core.chat.json_grammar import (
    MAX_DEPTH,
    MAX_ENUM,
    MAX_NODES,
    MAX_REPEAT,
    MAX_REPEAT_TOTAL,
    SchemaError,
    any_json_object_grammar,
    schema_grammar,
    value_rules,
)

MAX_STEPS = 400  # a walk still open after this many tokens counts as unfinished, not as wrong
WALKS_PER_SCHEMA = 4  # 4 x 30 schemas: 120 finished walks in all
SEEDS_PER_SCHEMA = 12
# Added to the random logits (standard normal) of end-of-generation tokens and of tokens made of
# closing characters, so that walks end in tens of steps; about the maximum of 49k normal draws,
# so a string or array ends about every other step where it may.
END_BONUS = 4.0
# Taken from whitespace-only tokens (162 of them; json-ws allows some at every token boundary):
# still chosen now and then, but walks are three times shorter. test_whitespace_is_bounded checks
# the bound itself.
WHITESPACE_MALUS = 3.0

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["value", "children"],
        }
    },
    "$ref": "#/$defs/node",
}

CORPUS: dict[str, Any] = {
    "flat": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "nothing": {"type": "null"},
        },
        "required": ["name", "age", "score", "ok", "nothing"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "address": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "maxLength": 8},
                            "zip": {"type": "integer"},
                        },
                        "required": ["city"],
                    }
                },
                "required": ["address"],
            }
        },
        "required": ["user"],
    },
    "optional-first": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
        "required": ["c"],
    },
    "all-optional": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
    },
    "optional-between": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"type": "null"}},
        "required": ["a", "c"],
    },
    "array-bounds": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    "array-exact": {"type": "array", "items": {"type": "boolean"}, "minItems": 3, "maxItems": 3},
    "array-at-most": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    "prefix-items": {
        "type": "array",
        "prefixItems": [{"type": "string", "maxLength": 4}, {"type": "integer"}, {"enum": ["x", "y"]}],
        "items": False,
        "minItems": 2,
    },
    "prefix-then-items": {
        "type": "array",
        "prefixItems": [{"const": "head"}],
        "items": {"type": "number"},
        "maxItems": 3,
    },
    "enum-mixed": {"enum": [1, "a", None, True, {"x": [1, 2]}, 2.5, [], "é", -0.001]},
    "const-string": {"const": 'say "hi" \\ back\\slash — ünïcødé 🙂\n\ttab \u0001 \ud83d'},
    "const-object": {"const": {"a": [1, "two", None], "b": {"c": False, "d": "\"'"}}},
    "any-of": {
        "anyOf": [
            {"type": "string", "maxLength": 3},
            {"type": "integer"},
            {"type": "object", "properties": {"k": {"type": "null"}}, "required": ["k"]},
        ]
    },
    "one-of-disjoint": {
        "oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "integer"}, "maxItems": 2}]
    },
    "type-list": {"type": ["string", "null"], "minLength": 1, "maxLength": 4},
    "type-list-array": {"type": ["integer", "boolean", "array"], "items": {"type": "null"}, "maxItems": 2},
    "string-lengths": {"type": "string", "minLength": 2, "maxLength": 6},
    "tree": TREE,
    "linked-list": {
        "type": "object",
        "properties": {"value": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["value", "next"],
        "additionalProperties": False,
    },
    "additional-schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
        "additionalProperties": {"type": "boolean"},
    },
    "required-extra": {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["b"],
        "additionalProperties": True,
    },
    "anyof-with-siblings": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
    },
    "tool-parameters": {  # an OpenAI tool's `parameters`
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["location"],
    },
    "structured-output": {  # OpenAI's structured-outputs guide, strict mode
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "maxItems": 2},
            "final_answer": {"type": "string"},
        },
        "required": ["steps", "final_answer"],
        "additionalProperties": False,
        "$defs": {
            "step": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            }
        },
    },
    "pydantic": {  # what pydantic's model_json_schema() writes for an Optional field and an enum
        "title": "User",
        "type": "object",
        "properties": {
            "name": {"title": "Name", "type": "string"},
            "email": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Email"},
            "role": {"allOf": [{"$ref": "#/$defs/Role"}], "default": "user"},
        },
        "required": ["name"],
        "$defs": {"Role": {"enum": ["admin", "user"], "title": "Role", "type": "string"}},
    },
    "definitions-draft7": {
        "definitions": {"p": {"type": "number"}},
        "type": "array",
        "items": {"$ref": "#/definitions/p"},
        "maxItems": 3,
    },
    "odd-names": {
        "type": "object",
        "properties": {
            'my key/with~odd"chars': {"type": "integer"},
            "ключ": {"type": "boolean"},
            "": {"type": "null"},
        },
        "required": ['my key/with~odd"chars', "ключ", ""],
    },
    "any-object": {"type": "object"},
    "anything": {},
}


@dataclass
class Vocab:
    ptr: Any  # llama_vocab_p
    pieces: list[bytes]
    eog: np.ndarray
    bonus: np.ndarray


@pytest.fixture(scope="module")
def vocab(smollm2_path: Path) -> Iterator[Vocab]:
    params = L.llama_model_default_params()
    params.vocab_only = True
    model = L.llama_model_load_from_file(str(smollm2_path).encode(), params)
    assert model
    try:
        ptr = L.llama_model_get_vocab(model)
        buf = ctypes.create_string_buffer(256)
        pieces = []
        for token in range(L.llama_vocab_n_tokens(ptr)):
            n = L.llama_token_to_piece(ptr, token, buf, len(buf), 0, False)
            pieces.append(buf.raw[: max(n, 0)])
        eog = np.array([L.llama_vocab_is_eog(ptr, t) for t in range(len(pieces))])
        closing = np.array([bool(p.strip()) and set(p.strip()) <= set(b'}]",') for p in pieces])
        blank = np.array([bool(p) and not p.strip() for p in pieces])
        bonus = (np.where(eog | closing, END_BONUS, 0.0) - np.where(blank, WHITESPACE_MALUS, 0.0)).astype(
            np.float32
        )
        yield Vocab(ptr, pieces, eog, bonus)
    finally:
        L.llama_model_free(model)


def grammar_sampler(vocab: Vocab, text: str) -> Any:
    sampler = L.llama_sampler_init_grammar(vocab.ptr, text.encode(), b"root")
    assert sampler, f"llama.cpp refused the grammar:\n{text}"
    return sampler


def walk(vocab: Vocab, text: str, seed: int) -> str | None:
    """Random tokens that the grammar allows until end of generation; None if still open after
    MAX_STEPS tokens."""
    sampler = grammar_sampler(vocab, text)
    rng = np.random.default_rng(seed)
    n_vocab = len(vocab.pieces)
    data = (L.llama_token_data * n_vocab)()
    view = np.ctypeslib.as_array(data)
    written: list[bytes] = []
    try:
        for _ in range(MAX_STEPS):
            view["id"] = np.arange(n_vocab)
            view["logit"] = rng.standard_normal(n_vocab, dtype=np.float32) + vocab.bonus
            view["p"] = 0.0
            candidates = L.llama_token_data_array(data, n_vocab, -1, False)
            L.llama_sampler_apply(sampler, ctypes.byref(candidates))
            best = int(np.argmax(view["logit"]))
            assert np.isfinite(view["logit"][best]), f"no token fits after {b''.join(written)!r}"
            token = int(view["id"][best])
            if vocab.eog[token]:  # allowed only once the grammar is complete
                return b"".join(written).decode()
            L.llama_sampler_accept(sampler, token)
            written.append(vocab.pieces[token])
        return None
    finally:
        L.llama_sampler_free(sampler)


def finished_walks(vocab: Vocab, text: str, count: int) -> list[str]:
    walks = (walk(vocab, text, seed) for seed in range(SEEDS_PER_SCHEMA))
    done = [w for w in walks if w is not None][:count]
    assert len(done) == count, f"only {len(done)} of {SEEDS_PER_SCHEMA} walks ended"
    return done


@pytest.mark.parametrize("name", list(CORPUS))
def test_llama_cpp_accepts_the_grammar(vocab: Vocab, name: str) -> None:
    L.llama_sampler_free(grammar_sampler(vocab, schema_grammar(CORPUS[name]).text))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CORPUS))
def test_walks_write_valid_instances(vocab: Vocab, name: str) -> None:
    """Each walk is valid, but for the keywords the grammar says it ignores (e.g. "maximum")."""
    schema = CORPUS[name]
    grammar = schema_grammar(schema)
    skip = dict.fromkeys(grammar.ignored, lambda *_: None)  # a check that finds nothing wrong
    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, skip)(schema)
    for text in finished_walks(vocab, grammar.text, WALKS_PER_SCHEMA):
        validator.validate(json.loads(text))


@pytest.mark.slow
def test_any_json_object(vocab: Vocab) -> None:
    grammar = any_json_object_grammar()
    assert grammar.ignored == ()
    for text in finished_walks(vocab, grammar.text, 3):
        assert isinstance(json.loads(text), dict)


@pytest.mark.slow
def test_value_rules_of_several_prefixes_merge(vocab: Vocab) -> None:
    schemas = {
        "tool-a": CORPUS["tool-parameters"],
        "tool-b": CORPUS["linked-list"],
        "tool-c": CORPUS["array-bounds"],
    }
    parts = {prefix: value_rules(schema, prefix) for prefix, schema in schemas.items()}
    for prefix, (name, rules) in parts.items():
        assert name == prefix
        assert all(n == prefix or n.startswith((f"{prefix}-", "json-")) for n in rules)
    for (_, one), (_, other) in itertools.combinations(parts.values(), 2):
        for name in one.keys() & other.keys():
            assert name.startswith("json-") and one[name] == other[name]
    merged: dict[str, str] = {"root": " | ".join(parts)}
    for _, rules in parts.values():
        merged.update(rules)
    taken = set()
    for text in finished_walks(vocab, "".join(f"{n} ::= {body}\n" for n, body in merged.items()), 8):
        value = json.loads(text)
        fits = {p for p, schema in schemas.items() if jsonschema.Draft202012Validator(schema).is_valid(value)}
        assert fits, text
        taken |= fits
    assert len(taken) >= 2  # the walks took more than one branch


def test_value_rules_refuses_a_prefix_that_could_clash() -> None:
    for prefix in ("", "json-tool", "json", "a b", "a_b", "-a"):
        with pytest.raises(ValueError, match="prefix"):
            value_rules({}, prefix)


def test_same_schema_same_text() -> None:
    for schema in CORPUS.values():
        assert schema_grammar(schema).text == schema_grammar(copy.deepcopy(schema)).text


def accepts(vocab: Vocab, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets ``text`` (as the vocabulary tokenizes it) through
    to the end of generation."""
    raw = text.encode()
    tokens = (L.llama_token * (len(raw) + 8))()
    n = L.llama_tokenize(vocab.ptr, raw, len(raw), tokens, len(tokens), False, False)
    assert n >= 0
    sampler = grammar_sampler(vocab, grammar)
    try:
        for token in [*tokens[:n], int(np.flatnonzero(vocab.eog)[0])]:
            one = (L.llama_token_data * 1)(L.llama_token_data(token, 0.0, 0.0))
            L.llama_sampler_apply(sampler, ctypes.byref(L.llama_token_data_array(one, 1, -1, False)))
            if not np.isfinite(one[0].logit):
                return False
            if not vocab.eog[token]:
                L.llama_sampler_accept(sampler, token)
        return True
    finally:
        L.llama_sampler_free(sampler)


EXACT: dict[str, tuple[list[str], list[str]]] = {  # schema: (texts the grammar takes, texts it refuses)
    "optional-first": (
        ['{"c":null}', '{"a":1,"c":null}', '{"b":true,"c":null}', '{ "a" : 1 , "b":false,\n  "c":null }'],
        ["{}", '{,"c":null}', '{"c":null,}', '{"a":1"c":null}', '{"b":true,"a":1,"c":null}', '{"a":1}'],
    ),
    "all-optional": (
        [
            "{}",
            "{ }",
            '{"a":1}',
            '{"b":true}',
            '{"c":null}',
            '{"a":1,"c":null}',
            '{"a":-2,"b":true,"c":null}',
        ],
        ["{,}", '{"a":1,}', '{,"a":1}', '{"d":1}', '{"c":null,"a":1}'],
    ),
    "optional-between": (
        ['{"a":1,"c":null}', '{"a":1,"b":true,"c":null}'],
        ['{"a":1}', '{"b":true,"c":null}'],
    ),
    "additional-schema": (['{"id":1}', '{"id":1,"x":true,"y":false}'], ['{"x":true}', '{"id":1,"x":1}']),
    "required-extra": (['{"b":[]}', '{"a":"","b":{"z":1}}', '{"a":"","b":1,"c":2}'], ['{"a":""}', "{}"]),
    "array-bounds": (["[1,2]", "[1, 2, 3, 4]"], ["[]", "[1]", "[1,2,3,4,5]", "[1,]", "[1.5,2]"]),
    "prefix-items": (['["ab",1]', '["ab",1,"y"]'], ['["ab"]', '["ab",1,"y",2]', '["abcde",1]', '[1,"ab"]']),
    "prefix-then-items": (['["head"]', '["head",1.5,-2e10]', "[]"], ['["head",1,2,3]', '["tail"]']),
    "string-lengths": (
        ['"ab"', '"abcdef"', '"\\u00e9\\n"', '"🙂🙂"', '"\\udc00x"'],
        ['"a"', '"abcdefg"', '"\\ud83d\\ude00"', '"a\\x"', '"a\tb"'],
    ),
    "const-string": (
        [json.dumps(CORPUS["const-string"]["const"], ensure_ascii=False).replace("\ud83d", "\\ud83d")],
        ['"say"'],
    ),
    "enum-mixed": (['{"x":[1,2]}', "-0.001", '"é"', "[]"], ['{"x": [1,2]}', "2", '"b"']),
    "anything": (
        ['{"a":[1,{"b":null}],"c":"d"}', "1234567890123456e5", "-0.5e-300", '"\\u00e9"'],
        ["12345678901234567", "1.12345678901234567", "1e1234", "01", '"\\x"', "{" + " " * 2 + "}", "nul"],
    ),
    "linked-list": (
        ['{"value":1,"next":{"value":2,"next":null}}'],
        ['{"value":1}', '{"next":null,"value":1}'],
    ),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_grammar_takes_exactly_the_valid_texts(vocab: Vocab, name: str) -> None:
    grammar = schema_grammar(CORPUS[name]).text
    good, bad = EXACT[name]
    assert [t for t in good if not accepts(vocab, grammar, t)] == []
    assert [t for t in bad if accepts(vocab, grammar, t)] == []
    for text in good:  # the expectations themselves are right
        jsonschema.validate(json.loads(text), CORPUS[name])


def test_whitespace_is_bounded(vocab: Vocab) -> None:
    grammar = schema_grammar(CORPUS["array-bounds"]).text
    assert accepts(vocab, grammar, "[1,\n" + " " * 32 + "2]")
    assert not accepts(vocab, grammar, "[1,\n" + " " * 33 + "2]")
    assert not accepts(vocab, grammar, "[1,  2]")
    assert not accepts(vocab, grammar, "[1,\n\n2]")


def test_ignored_keywords_are_listed() -> None:
    schema = {
        "type": "object",
        "description": "a person",
        "title": "Person",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 150, "default": 3},
            "email": {"type": "string", "format": "email", "pattern": ".+@.+"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "ref": {"$ref": "#/$defs/x", "type": "integer"},
        },
        "x-vendor": 1,
        "$defs": {"x": {"type": "integer"}},
    }
    ignored = ("format", "maximum", "minimum", "pattern", "type", "uniqueItems", "x-vendor")
    assert schema_grammar(schema).ignored == ignored
    assert schema_grammar(CORPUS["structured-output"]).ignored == ()
    assert schema_grammar(CORPUS["pydantic"]).ignored == ()


def nested_arrays(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(levels):
        schema = {"type": "array", "items": schema, "maxItems": 1}
    return schema


BAD: list[tuple[object, str, str]] = [  # (schema, pointer in the message, words in it)
    (3, "/", "object or a boolean"),
    (False, "/", "no value"),
    ({"properties": {"a": 5}}, "/properties/a", "object or a boolean"),
    (
        {"properties": {"a": {"items": False, "type": "array", "prefixItems": [False]}}},
        "/properties/a/prefixItems/0",
        "no value",
    ),
    ({"properties": []}, "/properties", "an object"),
    ({"required": "a"}, "/required", "list of property names"),
    ({"required": [1]}, "/required", "list of property names"),
    ({"additionalProperties": "no"}, "/additionalProperties", "a schema"),
    ({"items": [{"type": "string"}]}, "/items", "prefixItems"),
    ({"prefixItems": {}}, "/prefixItems", "a list"),
    ({"type": "strin"}, "/type", "unknown type"),
    ({"type": []}, "/type", "type"),
    ({"type": 5}, "/type", "type"),
    ({"minItems": -1}, "/minItems", "non-negative"),
    ({"maxLength": "3"}, "/maxLength", "non-negative"),
    ({"minItems": True}, "/minItems", "non-negative"),
    ({"minItems": 3, "maxItems": 2}, "/minItems", "larger than maxItems"),
    ({"prefixItems": [{}], "items": False, "minItems": 2}, "/minItems", "prefixItems"),
    ({"minItems": MAX_REPEAT + 1}, "/minItems", f"limit of {MAX_REPEAT}"),
    ({"type": "string", "maxLength": MAX_REPEAT + 1}, "/maxLength", f"limit of {MAX_REPEAT}"),
    (
        {
            "properties": {
                str(i): {"maxLength": MAX_REPEAT} for i in range(MAX_REPEAT_TOTAL // MAX_REPEAT + 1)
            }
        },
        f"/properties/{MAX_REPEAT_TOTAL // MAX_REPEAT}",
        f"add up to more than {MAX_REPEAT_TOTAL}",
    ),
    ({"anyOf": []}, "/anyOf", "non-empty"),
    ({"oneOf": {}}, "/oneOf", "a list"),
    ({"allOf": [{}, {}]}, "/allOf", "more than one"),
    ({"enum": []}, "/enum", "non-empty"),
    ({"enum": list(range(MAX_ENUM + 1))}, "/enum", f"more than {MAX_ENUM}"),
    ({"const": float("nan")}, "/const", "not JSON"),
    ({"enum": [1, {2}]}, "/enum/1", "not JSON"),
    ({"$ref": 5}, "/$ref", "a string"),
    ({"$ref": "http://example.com/schema.json"}, "/$ref", "only #"),
    ({"$ref": "other.json#/x"}, "/$ref", "only #"),
    ({"properties": {"a": {}, "b": {"$ref": "#/properties/a"}}}, "/properties/b/$ref", "only #"),
    ({"$ref": "#/$defs/missing", "$defs": {}}, "/$ref", "no definition"),
    ({"$ref": "#/$defs/a/b", "$defs": {"a": {"b": {}}}}, "/$ref", "only #"),
    ({"$ref": "#/$defs/a"}, "/$ref", "no definition"),
    ({"$defs": []}, "/$defs", "an object"),
    ({"$ref": "#"}, "/$ref", "contains itself"),
    ({"anyOf": [{"$ref": "#"}, {"type": "null"}]}, "/anyOf/0/$ref", "contains itself"),
    (
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        "/$defs/b/$ref",
        "contains itself",
    ),
    ({"properties": {"a": {}}, "required": ["b"]}, "/required", "'b' is required"),
    (
        {"properties": {"a": {}}, "required": ["b"], "additionalProperties": False},
        "/required",
        "'b' is required",
    ),
    (nested_arrays(MAX_DEPTH + 1), "/items" * (MAX_DEPTH + 1), f"more than {MAX_DEPTH} levels"),
    (
        {"anyOf": [{"type": "integer"}] * MAX_NODES},
        "/anyOf/1999",
        f"more than {MAX_NODES} parts",
    ),
    ({"enum": [f"{i}" + "x" * 300 for i in range(MAX_ENUM)]}, "/", "larger than 256 KiB"),
    ({"const": "x" * 300_000}, "/", "larger than 256 KiB"),
]


@pytest.mark.parametrize(
    ("schema", "pointer", "words"), BAD, ids=[f"{i}-{w}" for i, (_, _, w) in enumerate(BAD)]
)
def test_bad_schemas_are_refused_with_a_pointer(schema: object, pointer: str, words: str) -> None:
    with pytest.raises(SchemaError) as caught:
        schema_grammar(schema)
    message = str(caught.value)
    shown = pointer if len(pointer) <= 200 else f"{pointer[:100]}…{pointer[-100:]}"  # long ones cut
    assert message.startswith(f"schema at {shown}: ")
    assert words in message
    assert caught.value.hint


def test_bounds_are_inclusive(vocab: Vocab) -> None:
    for schema in (
        nested_arrays(MAX_DEPTH),
        {"type": "string", "minLength": MAX_REPEAT, "maxLength": MAX_REPEAT},
        {"type": "array", "items": {"type": "null"}, "maxItems": MAX_REPEAT},
        {"enum": list(range(MAX_ENUM))},
        {"anyOf": [{"type": "integer"}] * (MAX_NODES - 1)},
        {"properties": {str(i): {"maxLength": MAX_REPEAT} for i in range(MAX_REPEAT_TOTAL // MAX_REPEAT)}},
    ):
        L.llama_sampler_free(grammar_sampler(vocab, schema_grammar(schema).text))

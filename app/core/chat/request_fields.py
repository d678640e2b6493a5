"""Reading fields of a JSON request body that strangers send: each reader checks the JSON type
and the range and raises :class:`~app.core.errors.InvalidRequestError` naming the parameter (the
server turns it into OpenAI's 400 error body)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.errors import InvalidRequestError


def bad(param: str, message: str, code: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {message}", param=param, code=code)


def number(body: Mapping[str, Any], key: str, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(key, f"expected a number, got {json_kind(value)}")
    if not lo <= value <= hi:
        raise bad(key, f"{value} is outside [{lo:g}, {hi:g}]")
    return float(value)


def integer(body: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(key, f"expected an integer, got {json_kind(value)}")
    if not lo <= value <= hi:
        raise bad(key, f"{value} is outside [{lo}, {hi}]")
    return value


def flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(key, f"expected true or false, got {json_kind(value)}")
    return value


def string(body: Mapping[str, Any], key: str, *, max_chars: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad(key, f"expected a string, got {json_kind(value)}")
    if max_chars is not None and len(value) > max_chars:
        raise bad(key, f"longer than {max_chars} characters")
    return value


def json_object(value: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise bad(param, f"expected an object, got {json_kind(value)}")
    return value


def json_kind(value: Any) -> str:
    """A JSON value's type in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"

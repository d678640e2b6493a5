"""The base of every message between the app and its child processes (:mod:`app.engine.protocol`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = ""

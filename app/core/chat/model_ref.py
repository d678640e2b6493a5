"""Which model wrote a conversation or an answer, and how to load it again.

A conversation stores the file of the model that last answered in it and that model's plan
(``ChatSession`` writes ``model_name``, ``quant`` and the load settings into it); each answer stores
the label of the model that wrote it. The window shows these labels, offers to load a chat's own
model when another is loaded, and remembers the models used last (:mod:`app.core.chat.recent`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.chat.records import Conversation

LOAD_KEYS = ("n_ctx", "n_gpu_layers", "type_k")  # what "load it again" repeats of a plan


def model_label(name: str, quant: str | None) -> str:
    """ "SmolLM2 135M Instruct · Q4_1": a model as the window names it."""
    return f"{name} · {quant}" if quant and quant != "?" else name  # "?": the planner could not tell


def file_stem(path: str) -> str:
    """A model's name when nothing better is known: its file name without ``.gguf``."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same model file (spelled alike once made absolute)."""
    return _spelling(a) == _spelling(b)


def _spelling(path: str) -> str:
    """One spelling per file: absolute, ``..`` resolved, case folded where the system folds it
    (links are not followed: a link and its target are two entries, as in the library)."""
    return os.path.normcase(os.path.normpath(Path(path).absolute()))


@dataclass(frozen=True)
class ModelRef:
    """A model file with its name, quantization and the settings it was loaded with."""

    path: str
    name: str
    quant: str | None = None
    n_ctx: int | None = None  # None: the planner's default
    n_gpu_layers: int | None = None  # None: the planner's split for this machine
    type_k: str | None = None

    @property
    def label(self) -> str:
        return model_label(self.name, self.quant)

    @property
    def present(self) -> bool:
        return Path(self.path).is_file()

    def load_settings(self) -> dict[str, Any]:
        """The settings to load it again with (the window's ``open_chat`` dict)."""
        values = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers, "type_k": self.type_k}
        return {k: v for k, v in values.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "quant": self.quant, **self.load_settings()}

    @classmethod
    def from_dict(cls, data: object) -> ModelRef | None:
        """The ref in ``data`` (a saved dict or a conversation's plan with ``path``); None when it
        names no file. Values of the wrong type are dropped, never trusted."""
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
            return None
        path = data["path"]
        name = data.get("name") if isinstance(data.get("name"), str) else None
        return cls(path, name or file_stem(path), _str(data.get("quant")), _int(data.get("n_ctx")),
                   _int(data.get("n_gpu_layers")), _str(data.get("type_k")))  # fmt: skip


def conversation_model(conv: Conversation) -> ModelRef | None:
    """The model that wrote ``conv`` (the last one that answered in it); None when it names no file."""
    return ModelRef.from_dict({**conv.plan, "path": conv.model, "name": conv.plan.get("model_name")})


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None

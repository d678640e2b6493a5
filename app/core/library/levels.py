"""The quantization levels of one model that the user has: its other GGUF files (``tailorlm bench
--quant all``, the Advisor's "Benchmark every level").

Two files are levels of the same model when their headers agree on the architecture, the number
of layers and the number of parameters (a quantization changes none of them; another model of the
same family differs in at least one). They are looked for in the library and in the file's own
folder, where downloads of several quantizations usually sit side by side. A folder holds
strangers' files: only ``.gguf`` files, at most ``MAX_FOLDER_FILES`` of them, and a file whose
header cannot be read is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import TailorError
from app.core.library.entry import LibraryModel
from app.core.library.header_facts import describe

MAX_FOLDER_FILES = 64
_SPLIT_LATER_PART = "-of-"  # "model-00002-of-00003.gguf": llama.cpp opens the first part


@dataclass(frozen=True)
class Level:
    quant: str
    path: Path
    size_bytes: int


def _same_model(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(a.get(k) == b.get(k) and a.get(k) is not None for k in ("arch", "n_layers", "n_params"))


def levels_of(path: Path, library: Iterable[LibraryModel] = ()) -> list[Level]:
    """Every level of the model in ``path`` (that file included), one file per quantization,
    largest first. ``library``: the library's models, whose headers are already known."""
    path = Path(path).resolve()
    facts = describe([path])
    found: dict[str, Level] = {str(facts["quant"]): Level(str(facts["quant"]), path, path.stat().st_size)}
    for m in library:
        if m.quant and m.quant not in found and m.present and _same_model(facts, m.__dict__):
            found[m.quant] = Level(m.quant, m.path, m.size_bytes)
    siblings = sorted(p for p in path.parent.glob("*.gguf") if p.resolve() != path)[:MAX_FOLDER_FILES]
    for p in siblings:
        if _SPLIT_LATER_PART in p.name and "-00001-of-" not in p.name:
            continue
        try:
            other = describe([p])
        except (TailorError, OSError):
            continue  # not a model this app can read: not a level
        quant = str(other["quant"])
        if quant not in found and _same_model(facts, other):
            found[quant] = Level(quant, p.resolve(), p.stat().st_size)
    return sorted(found.values(), key=lambda lv: -lv.size_bytes)

"""A combo box of the library's models that are on disk, filled off the GUI thread — the Advisor's,
the quantization panel's and the Chat's model pickers share it (the Chat's lists the models it
used last first)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QComboBox

from app.gui.workers import start_worker

COMBO_MIN_CHARS = 20  # a combo box of model names is this wide at least, however long the names


def compact_combo(combo: QComboBox, chars: int = COMBO_MIN_CHARS) -> None:
    """Let ``combo`` be narrower than its longest item (a long model id would otherwise set the
    window's minimum width); each item's tooltip keeps the whole name."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)


def refresh_library_combo(
    owner: QObject,
    library: Any,
    combo: QComboBox,
    *,
    empty_text: str = "",
    on_failed: Callable[[str, str], None] | None = None,
    first: Sequence[str] = (),
    on_done: Callable[[], None] | None = None,
) -> None:
    """List ``library``'s present models in ``combo`` (label: id and quant; data: the path).

    ``first``: model files to list before the others, in this order (the Chat's last used); one
    that is not in the library is listed by its file name while it is on disk. ``on_done`` runs
    once the combo is filled.
    The listing is ``owner``'s "library" worker: a newer refresh replaces an older one. The combo
    is made compact (:func:`compact_combo`): long ids do not widen the window.
    """
    compact_combo(combo)

    def work(report: Any, cancel: Any) -> list[tuple[str, str]]:
        models = {_key(str(m.path)): m for m in library.models() if m.present}
        items: dict[str, tuple[str, str]] = {}
        for path in first:
            m = models.get(_key(path))
            if m is not None:
                items.setdefault(_key(path), (f"{m.id} ({m.quant or '?'})", str(m.path)))
            elif Path(path).is_file():
                items.setdefault(_key(path), (Path(path).name, path))
        for key, m in models.items():
            items.setdefault(key, (f"{m.id} ({m.quant or '?'})", str(m.path)))
        return list(items.values())

    def done(items: list[tuple[str, str]]) -> None:
        chosen = combo.currentData()  # a refresh keeps the model that was chosen
        combo.clear()
        for label, path in items:
            combo.addItem(label, path)
            combo.setItemData(combo.count() - 1, f"{label}\n{path}", Qt.ItemDataRole.ToolTipRole)
        if chosen is not None and combo.findData(chosen) >= 0:
            combo.setCurrentIndex(combo.findData(chosen))
        if empty_text:
            combo.setPlaceholderText("" if items else empty_text)
        if on_done is not None:
            on_done()

    def failed(message: str, hint: str, cancelled: bool) -> None:
        if on_failed is not None and not cancelled:
            on_failed(message, hint)

    start_worker(work, owner=owner, latest="library", on_return=done, on_error=failed)


def _key(path: str) -> str:
    """One spelling per file: the library's absolute paths and a path given by hand compare equal."""
    return os.path.normcase(os.path.normpath(Path(path).absolute()))

"""A combo box of the library's models that are on disk, filled off the GUI thread — the Advisor's
and the quantization panel's "from the library" pickers share it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QComboBox

from app.gui.workers import start_worker


def refresh_library_combo(
    owner: QObject,
    library: Any,
    combo: QComboBox,
    *,
    empty_text: str = "",
    on_failed: Callable[[str, str], None] | None = None,
) -> None:
    """List ``library``'s present models in ``combo`` (label: id and quant; data: the path).

    The listing is ``owner``'s "library" worker: a newer refresh replaces an older one.
    """

    def work(report: Any, cancel: Any) -> list[tuple[str, str]]:
        return [(f"{m.id} ({m.quant or '?'})", str(m.path)) for m in library.models() if m.present]

    def done(items: list[tuple[str, str]]) -> None:
        combo.clear()
        for label, path in items:
            combo.addItem(label, path)
        if empty_text:
            combo.setPlaceholderText("" if items else empty_text)

    def failed(message: str, hint: str, cancelled: bool) -> None:
        if on_failed is not None and not cancelled:
            on_failed(message, hint)

    start_worker(work, owner=owner, latest="library", on_return=done, on_error=failed)

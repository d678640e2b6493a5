"""The Convert panel's result box: what the latest conversion made — the file, its size and
precision, how long it took, its name in the library, the words it wrote when it was checked, and
any warnings — with the two things to do next with it, "Open in Advisor" and "Chat with it"."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from app.core.units import format_bytes


def result_html(result: Any) -> str:
    """An ``app.engine.build.BuildResult`` as the box's lines (rich text: the file name in bold)."""
    took = sum(result.timings_s.values())
    lines = [
        f"<b>{escape(str(result.path))}</b>",
        f"{format_bytes(result.size_bytes)} at {result.file_type}, made in {took:.0f} s",
        f"In the library as <b>{result.library_id}</b>" if result.library_id else "Not added to the library",
        f"It wrote: “{escape(result.sample.strip())}”",
        *map(escape, result.warnings),
    ]
    return "<br>".join(lines)


class ResultBox(QGroupBox):
    """Hidden until a conversion succeeds. ``label``: the text's label, made by the panel like its
    other read-only, selectable lines; the panel connects the two buttons."""

    def __init__(self, label: QLabel) -> None:
        super().__init__("Result")
        self.label = label
        self.advise_button = QPushButton("Open in &Advisor")
        self.advise_button.setAccessibleName("Open the converted model in the Advisor")
        self.chat_button = QPushButton("C&hat with it")
        self.chat_button.setAccessibleName("Chat with the converted model")
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        actions = QHBoxLayout()
        actions.addWidget(self.advise_button)
        actions.addWidget(self.chat_button)
        actions.addStretch(1)
        layout.addLayout(actions)
        self.hide()

    def show_result(self, result: Any) -> None:
        self.label.setText(result_html(result))
        self.show()

"""The Convert panel's result box: what the latest conversion made — the file, its size and
precision, how long it took, the importance matrix it was made with, how many tensors of each type
it holds (where kept tensors show), its name in the library, the words it wrote when it was
checked, and any warnings — with the two things to do next with it, "Open in Advisor" and "Chat with it"."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from app.core.units import format_bytes


def types_line(tensor_types: dict[str, int]) -> str:
    """ "Tensor types: Q2_K × 120, F32 × 61, Q8_0 × 31" — the most common first."""
    ordered = sorted(tensor_types.items(), key=lambda kv: (-kv[1], kv[0]))
    return "Tensor types: " + ", ".join(f"{name} × {n}" for name, n in ordered)


def result_html(result: Any, converted: Any = None) -> str:
    """An ``app.engine.build.BuildResult`` as the box's lines (rich text: the file name in bold);
    ``converted``: the ``convert_run.Converted`` it came in, for the matrix and the tensor types."""
    took = sum(result.timings_s.values())
    lines = [
        f"<b>{escape(str(result.path))}</b>",
        f"{format_bytes(result.size_bytes)} at {result.file_type}, made in {took:.0f} s",
    ]
    if converted is not None and converted.imatrix is not None:
        made = ", made now and kept beside it" if converted.made_imatrix else ""
        lines.append(f"With the importance matrix {escape(converted.imatrix.name)}{made}")
    if converted is not None and converted.tensor_types:
        lines.append(escape(types_line(converted.tensor_types)))
    lines += [
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

    def show_result(self, result: Any, converted: Any = None) -> None:
        self.label.setText(result_html(result, converted))
        self.show()

"""The "Measured runs" window: what a benchmark measured, one row per level — quantization, context,
GPU layers, prompt and generation speed (the median of the repetitions and their spread), the
advisor's prediction, peak RAM and load time — a bar chart of the generation speeds, the levels not
measured with the reason, and every run recorded for these files on this machine (benchmarks, chat
answers, failed loads) with what it measured beside what the advisor predicted.

Rows are plain tuples of words (:func:`run_rows`, :func:`history_rows`); unknown figures are "—".
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from app.core.advice.profiles import Profile
    from app.gui.panels.advisor_bench import BenchRun

UNKNOWN = "—"
RUN_COLUMNS = ("Quant", "Context", "GPU layers", "Prompt tok/s", "Generation tok/s", "Predicted tok/s",
               "Peak RAM", "Load")  # fmt: skip
RUN_TIPS = (
    "The quantization of the file measured.",
    "The context the model was loaded with (the Advisor's context slider).",
    "Layers on the GPU (0: the CPU only).",
    "Tokens per second reading a prompt into an empty cache: the median of the repetitions (slowest–fastest).",
    "Tokens per second writing after that prompt: the median of the repetitions (slowest–fastest).",
    "The advisor's prediction of the writing speed for the same settings, before this machine's "
    "benchmarks calibrated it.",
    "The model process's peak memory in RAM while it ran.",
    "Seconds from starting the model process to the model being ready.",
)
HISTORY_COLUMNS = ("When", "Kind", "Quant", "Context", "GPU layers", "Generation tok/s", "Predicted tok/s",
                   "Peak RAM", "Outcome")  # fmt: skip
RUN_NUMBERS = frozenset(range(1, len(RUN_COLUMNS)))  # right-aligned columns
HISTORY_NUMBERS = frozenset({3, 4, 5, 6, 7})
KIND_WORDS = {"bench": "benchmark", "answer": "chat answer", "load": "load"}
OUTCOME_WORDS = {"ok": "ran", "out_of_memory": "ran out of memory", "crash": "crashed"}
EMPTY_HEADING = "No benchmark yet: press Benchmark in the Advisor to measure a file here."
CHART_ROW_PX = 22  # one bar, as the memory bar's rows (app/gui/widgets/membar.py)
CHART_LABEL_PX = 90  # the quantization's name left of its bar
CHART_VALUE_PX = 120  # "123.4 tokens/s" right of it


def spread(values: Sequence[float]) -> str:
    """ "52.3 (50.1–54.0)": the median and the slowest and fastest repetition."""
    if not values:
        return UNKNOWN
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}–{max(values):,.1f})"


def _number(value: float | None, fmt: str = ",.1f") -> str:
    return UNKNOWN if value is None else format(value, fmt)


def _bytes(n: int | None) -> str:
    from app.core.units import format_bytes

    return UNKNOWN if n is None else format_bytes(n)


def _local_time(when: str) -> str:
    return datetime.fromisoformat(when).astimezone().strftime("%Y-%m-%d %H:%M")


def run_rows(run: BenchRun) -> list[tuple[str, ...]]:
    """One row per measured level of ``run``, largest file first."""
    rows = []
    for lr in run.measured:
        r = lr.result
        assert r is not None
        rows.append((r.quant, f"{r.n_ctx:,}", str(r.n_gpu_layers), spread(r.prompt_tok_s), spread(r.gen_tok_s),
                     _number(r.predicted.tok_s if r.predicted else None), _bytes(r.peak_ram_bytes),
                     f"{r.load_s:.1f} s"))  # fmt: skip
    return rows


def not_measured(run: BenchRun) -> list[str]:
    """A sentence for each level of ``run`` with no measurement: skipped, failed or not reached."""
    out = []
    for lr in run.levels:
        if lr.result is not None and lr.result.gen_tok_s:
            continue
        why = (
            lr.level.skipped or lr.error or ("cancelled before it ran." if run.cancelled else "not measured.")
        )
        out.append(f"{lr.level.quant} ({lr.level.path.name}): {why}")
    return out


def busy_notes(run: BenchRun) -> list[str]:
    """A sentence for each level measured while other programs kept the CPUs busy."""
    return [f"{r.quant}: other programs took {r.others_cpu_share:.0%} of the CPUs while it was measured, so it is "
            "kept but does not calibrate the advisor; measure it again when the computer is quiet."
            for lr in run.measured if (r := lr.result) is not None and r.busy and r.others_cpu_share is not None]  # fmt: skip


def history_rows(profiles: Sequence[Profile]) -> list[tuple[str, ...]]:
    """One row per recorded run, in the order given (newest first)."""
    rows = []
    for p in profiles:
        m, k = p.measured, p.key
        imported = " (imported)" if p.source == "imported" else ""
        rows.append((_local_time(m.when), KIND_WORDS.get(p.kind, p.kind) + imported, k.quant, f"{k.n_ctx:,}",
                     str(k.n_gpu_layers), _number(m.gen_tok_s), _number(p.predicted.tok_s if p.predicted else None),
                     _bytes(m.peak_ram_bytes), OUTCOME_WORDS.get(m.outcome, m.outcome)))  # fmt: skip
    return rows


def _table(columns: Sequence[str], name: str, tips: Sequence[str] = ()) -> QTableWidget:
    t = QTableWidget(0, len(columns))
    t.setHorizontalHeaderLabels(list(columns))
    for i, tip in enumerate(tips):
        header = t.horizontalHeaderItem(i)
        if header is not None:
            header.setToolTip(tip)
    t.setAccessibleName(name)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.verticalHeader().hide()
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _fill(table: QTableWidget, rows: Sequence[tuple[str, ...]], numbers: frozenset[int]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c in numbers:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class SpeedChart(QWidget):
    """Horizontal bars of generation speed, one per level, painted; the same numbers are its
    accessible description, so a screen reader reads what the bars show."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: tuple[tuple[str, float], ...] = ()
        self.setAccessibleName("Generation speed per level, tokens per second")
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # reachable, so screen readers announce it
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.set_bars(())

    def set_bars(self, bars: Sequence[tuple[str, float]]) -> None:
        self.bars = tuple(bars)
        text = (
            "; ".join(f"{name}: {v:,.1f} tokens per second" for name, v in self.bars)
            or "Nothing measured yet"
        )
        self.setAccessibleDescription(text)
        self.setToolTip(text)
        self.setFixedHeight(max(1, len(self.bars)) * (CHART_ROW_PX + 6) + 8)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, self.height())

    def paintEvent(self, event: object) -> None:
        from app.gui.theme import plot_colors

        p = QPainter(self)
        pal = self.palette()
        text = pal.color(QPalette.ColorRole.WindowText)
        colour = QColor(plot_colors(pal).before)
        width = max(10, self.width() - CHART_LABEL_PX - CHART_VALUE_PX)
        top = max((v for _, v in self.bars), default=0.0) or 1.0
        y = 4
        p.setPen(text)
        if not self.bars:
            p.drawText(
                QRectF(0, y, self.width(), CHART_ROW_PX),
                Qt.AlignmentFlag.AlignVCenter,
                "Nothing measured yet.",
            )
        for name, value in self.bars:
            p.drawText(QRectF(0, y, CHART_LABEL_PX - 6, CHART_ROW_PX), Qt.AlignmentFlag.AlignVCenter, name)
            p.fillRect(QRectF(CHART_LABEL_PX, y, max(2.0, width * value / top), CHART_ROW_PX), colour)
            p.drawText(QRectF(CHART_LABEL_PX + width + 6, y, CHART_VALUE_PX - 6, CHART_ROW_PX),
                       Qt.AlignmentFlag.AlignVCenter, f"{value:,.1f} tokens/s")  # fmt: skip
            y += CHART_ROW_PX + 6
        p.end()


def _words(text: str, name: str) -> QLabel:
    label = QLabel(text)
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class BenchWindow(QWidget):
    """A window of its own (non-modal) beside the main one; ``show_run`` and ``show_history`` fill it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Measured runs")
        self.setAccessibleName("Measured runs")
        lay = QVBoxLayout(self)
        self.heading = _words(EMPTY_HEADING, "What was measured")
        lay.addWidget(self.heading)
        self.runs_table = _table(RUN_COLUMNS, "Benchmark results, one row per level", RUN_TIPS)
        lay.addWidget(self.runs_table, 1)
        self.notes = _words("", "Levels not measured")
        self.notes.hide()
        lay.addWidget(self.notes)
        self.chart = SpeedChart()
        lay.addWidget(self.chart)
        lay.addWidget(_words("Every run recorded for these files on this machine, newest first: what it "
                             "measured beside what the advisor predicted.", "About the recorded runs"))  # fmt: skip
        self.history_table = _table(HISTORY_COLUMNS, "Runs recorded for these files")
        lay.addWidget(self.history_table, 1)
        self.resize(920, 640)

    def show_run(self, run: BenchRun) -> None:
        """The levels of ``run``, the chart of their speeds and the files' recorded runs."""
        measured = [lr.result for lr in run.measured if lr.result is not None]
        if measured:
            r = measured[0]
            self.setWindowTitle(f"Measured runs — {r.model_name}")
            self.heading.setText(
                f"{r.model_name}: prompts of {r.n_prompt} tokens into an empty cache, then {r.n_gen} tokens "
                f"written; the median of {r.reps} repetitions (slowest–fastest). Predicted: the advisor's "
                "speed model before this machine's benchmarks calibrated it."
                + (" Cancelled: the levels measured before it." if run.cancelled else "")
            )
        else:
            self.heading.setText(
                "Nothing was measured." if not run.cancelled else "Cancelled before any level ran."
            )
        _fill(self.runs_table, run_rows(run), RUN_NUMBERS)
        skipped, busy = not_measured(run), busy_notes(run)
        words = [("Not measured: " + " ".join(skipped)) if skipped else "", " ".join(busy)]
        self.notes.setText(" ".join(w for w in words if w))
        self.notes.setVisible(bool(skipped or busy))
        self.chart.set_bars([(r.quant, r.median("gen") or 0.0) for r in measured])
        self.show_history(run.history)

    def show_history(self, profiles: Sequence[Profile]) -> None:
        _fill(self.history_table, history_rows(profiles), HISTORY_NUMBERS)

"""The Advisor's plan table and memory bars: core Plans in, words and colours out.

Every placement is said in words ("Partly on the GPU") as well as colour; the recommended row is
bold, tinted, and says "recommended" in its own column, so nothing depends on colour alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from app.gui.widgets.membar import Bar

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget, Plan
    from app.gui.panels.advisor_compute import AdvisorResult

# placement → (words, background); light tints that keep dark text readable in both themes
FITS = {
    "gpu": ("Fits on the GPU", "#c8e6c9"),
    "partial": ("Partly on the GPU", "#e6ee9c"),
    "cpu": ("CPU only", "#ffe0b2"),
    "no": ("Does not fit", "#ffcdd2"),
}
RECOMMENDED_TINT = "#bbdefb"
COLUMNS = ("Quant", "File", "Fits", "GPU layers", "RAM", "VRAM", "tok/s", "Quality", "KLD",
           "Same top token", "Measured here", "Pick")  # fmt: skip
COL_FITS, COL_TOK_S, COL_PICK = 2, 6, len(COLUMNS) - 1
# What each column means, as its header's tooltip (the published numbers are llama.cpp's
# measurements on Llama-3-8B: app/core/advice/quality.py).
COLUMN_TIPS = {
    "Quant": "The quantization type: how many bits each weight keeps. Fewer bits, smaller file, more loss; "
             "F16 is the unquantized reference.",
    "File": "The size of the GGUF file at this quantization: what you download and load.",
    "Fits": "Where this plan runs with the chosen context: all on the GPU, partly on the GPU, on the CPU "
            "only, or not at all (after keeping some memory free for the system).",
    "GPU layers": "How many of the model's layers (counting the output layer) go to the GPU; the rest run "
                  "on the CPU. 0: the CPU only.",
    "RAM": "Memory this plan needs in RAM, predicted: the weights kept on the CPU, the KV cache (the "
           "context), compute buffers and the runtime.",
    "VRAM": "GPU memory this plan needs, predicted the same way; — when nothing runs on the GPU.",
    "tok/s": "Predicted writing speed in tokens per second (a token is about ¾ of a word); about 5 is "
             "reading speed. A rough estimate from memory bandwidth.",
    "Quality": "How much of the full-precision model's quality this level keeps, in words (lossless, "
               "excellent, very good, good, fair, poor), from llama.cpp's measurements on Llama-3-8B — or, "
               "where you measured this model (`tailorlm quality` or `tailorlm ladder`), from yours.",
    "KLD": "Mean KL divergence of the model's next-token probabilities from the unquantized (F16) model's, "
           "as llama.cpp measured it on Llama-3-8B: 0 is identical, lower is better; Q4_K_M is about 0.03.",
    "Same top token": "How often this level picks the same most likely next token as the unquantized model "
                      "(llama.cpp's Llama-3-8B measurements); — where none was published.",
    "Measured here": "What `tailorlm quality` or `tailorlm ladder` measured for this model on this machine: "
                     "KL divergence and same-top-token share against a reference file; the plans use it "
                     "instead of the published numbers. — until you run it.",
    "Pick": "★ recommended: the advisor's pick for this machine and context. \"this file\": the "
            "quantization of the file you chose.",
}  # fmt: skip


def set_header_tips(table: QTableWidget, tips: dict[str, str]) -> None:
    """Each column header's tooltip (and the accessible description screen readers give it)."""
    for col in range(table.columnCount()):
        item = table.horizontalHeaderItem(col)
        if item is not None and item.text() in tips:
            item.setToolTip(tips[item.text()])
            item.setData(Qt.ItemDataRole.AccessibleDescriptionRole, tips[item.text()])


def fit_words(fits: str) -> str:
    return FITS[fits][0]


def measured_text(m: dict[str, Any] | None) -> str:
    """A ``tailorlm quality`` measurement in one cell: "KLD 0.0123, 95 % same top token"."""
    if not m:
        return "—"
    parts = []
    if m.get("kld_mean") is not None:
        parts.append(f"KLD {m['kld_mean']:.4f}")
    if m.get("top1_agreement") is not None:
        parts.append(f"{100 * m['top1_agreement']:.0f} % same top token")
    ref = m.get("reference")
    return ", ".join(parts) + (f" (vs {ref})" if ref else "") if parts else "—"


class PlanTable(QTableWidget):
    """One row per quantization at the chosen context; row order is smallest file first."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setAccessibleName("Plans: one row per quantization")
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setTabKeyNavigation(False)  # Tab leaves the table; arrows move between rows
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        set_header_tips(self, COLUMN_TIPS)
        self.plans: tuple[Plan, ...] = ()
        self.recommended_row = -1

    def show_result(
        self, result: AdvisorResult, measured: dict[str, dict[str, Any]], own_quant: str | None = None
    ) -> None:
        """Fill the rows; ``own_quant`` marks the row of the file the user has (a local GGUF)."""
        from app.core.advice.reasons import gpu_layers_text
        from app.core.advice.speed_words import format_tok_s
        from app.core.units import format_bytes

        rec = result.recommended
        self.plans = result.plans
        self.recommended_row = -1
        self.setRowCount(len(self.plans))
        for row, p in enumerate(self.plans):
            q = p.quality
            agree = f"{100 * q.top_token_agreement:.1f} %" if q.top_token_agreement is not None else "—"
            label = q.label + (" (estimated)" if q.interpolated else "")
            if p.dominated_by:
                label += f"; {p.dominated_by} is smaller and better"
            is_rec = rec is not None and p.quant == rec.quant and p.n_ctx == rec.n_ctx
            cells = (
                p.quant, format_bytes(p.file_bytes), fit_words(p.fits), gpu_layers_text(p),
                format_bytes(p.ram_bytes), format_bytes(p.vram_bytes) if p.vram_bytes else "—",
                format_tok_s(p.speed.tok_s), label, f"{q.kld:.4f}", agree, measured_text(measured.get(p.quant)),
                "; ".join(t for t in ("★ recommended" if is_rec else "", "this file" if p.quant == own_quant else "") if t),
            )  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col in (1, 3, 4, 5, 6, 8, 9):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if col == COL_FITS:
                    item.setBackground(QBrush(QColor(FITS[p.fits][1])))
                    item.setForeground(QBrush(QColor("#000000")))
                elif is_rec:
                    item.setBackground(QBrush(QColor(RECOMMENDED_TINT)))
                    item.setForeground(QBrush(QColor("#000000")))
                if is_rec:
                    font = QFont(item.font())
                    font.setBold(True)
                    item.setFont(font)
                item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{COLUMNS[col]}: {text}")
                self.setItem(row, col, item)
            if is_rec:
                self.recommended_row = row

    def row_of(self, quant: str) -> int:
        return next((i for i, p in enumerate(self.plans) if p.quant == quant), -1)

    def selected_plan(self) -> Plan | None:
        row = self.currentRow()
        return self.plans[row] if 0 <= row < len(self.plans) else None


def memory_bars(plan: Plan, budget: Budget) -> list[Bar]:
    """The plan's memory per device against the budget: RAM first, then every GPU (empty when the
    plan leaves it unused, so the spare VRAM shows)."""
    bars = []
    for name in ["CPU"] + [f"GPU{i}" for i in range(len(budget.gpus))]:
        dev = plan.estimate.device(name)  # an unused device comes back empty
        segs = (
            ("Weights", dev.weights_bytes + dev.repack_bytes),  # repacked tensors are weights too
            ("KV cache", dev.kv_bytes),
            ("Compute", dev.compute_bytes),
            ("Output & runtime", dev.output_bytes + dev.runtime_bytes),
        )
        if name == "CPU":
            bars.append(Bar("RAM", segs, budget.ram_bytes))
            continue
        i = int(name[3:])
        label = "VRAM" if len(budget.gpus) == 1 else f"VRAM {i + 1}"
        bars.append(Bar(label, segs, budget.gpus[i].free_bytes, budget.gpus[i].name))
    return bars

"""The Advisor: which quantization of a model, at which context, fits this machine — and why.

Model → view-model → view: the core's :func:`app.core.advice.recommend.advise` (through
:mod:`app.gui.panels.advisor_compute`, on the thread pool) gives Plans; the table, the memory bar
and the reasons show them. The context slider, the GPU-layer override and the "what if" RAM/VRAM
boxes start a new computation 100 ms after the last change; a newer one cancels the older and
stale answers are dropped. The precision slider only moves the selected row. "Benchmark" measures
the file's plan here (:mod:`app.gui.panels.advisor_bench`); when it ends the plans are computed
again, with this machine's calibrated speeds and the measured runs beside them.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import TailorError
from app.gui.panels import advisor_compute as compute
from app.gui.panels.advisor_action import action_for, perform_action
from app.gui.panels.advisor_bench import BenchSettings, bench_job
from app.gui.panels.advisor_overview import CatalogOverview
from app.gui.panels.advisor_page import AdvicePage, heading_html
from app.gui.panels.advisor_source import ModelPicker, ModelRequest, request_for_spec
from app.gui.panels.advisor_table import measured_text, memory_bars
from app.gui.workers import Worker, discard_workers, start_worker

if TYPE_CHECKING:
    from app.core.advice.recommend import Budget, Plan
    from app.core.model.info import ModelInfo
    from app.gui.context import AppContext

DEBOUNCE_MS = 100  # slider drags: one advise per pause, not per pixel


class AdvisorPanel(QWidget):
    updated = Signal()  # a new AdvisorResult is on screen (``self.result``)
    # what to download for "Download and chat": {"repo_id", "filename" (a Hub file) or "quant"
    # (pick by type), "n_ctx", "n_gpu_layers"}; the window hands it to the Library panel
    pull_requested = Signal(dict)
    # (checkpoint folder, target precision) for "Convert to …"; the window hands it to Convert
    convert_requested = Signal(str, str)

    def __init__(self, ctx: AppContext, *, bench: BenchSettings | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.bench_settings = bench or BenchSettings()  # tests measure less, on one thread
        self.profile: Any = ctx.profile
        self.model: ModelInfo | None = None
        self.request: ModelRequest | None = None
        self.measured: dict[str, dict[str, Any]] = {}
        self.result: compute.AdvisorResult | None = None
        self._steps: list[int] = [compute.MIN_CTX]
        self._user_quant: str | None = None  # the row the user chose; kept across recomputes
        self._syncing = False
        self._loading: Worker | None = None  # reading a model: its page replaces the overview
        self._timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)
        self._build()
        ctx.profile_ready.connect(self._on_profile)
        ctx.workers_ready.connect(lambda _workers: self._budget_changed())
        if self.profile is None:
            ctx.detect()
        else:
            self._on_profile(self.profile)

    # --- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        self.picker = ModelPicker(self.ctx)
        self.picker.requested.connect(self.load)
        lay.addWidget(self.picker)
        what_if = QHBoxLayout()
        self.ram_spin = self._gb_spin("What-if RAM in gigabytes; 0 means as detected")
        self.vram_spin = self._gb_spin("What-if GPU memory in gigabytes; 0 means as detected")
        for text, spin in (("What if this machine had &RAM:", self.ram_spin), ("&VRAM:", self.vram_spin)):
            label = QLabel(text)
            label.setBuddy(spin)
            what_if.addWidget(label)
            what_if.addWidget(spin)
        what_if.addStretch(1)
        lay.addLayout(what_if)
        budget = QHBoxLayout()
        # wrapped, beside the button: with a what-if GPU it names the GPU and grows long
        self.budget_label = QLabel("Detecting this machine…")
        self.budget_label.setAccessibleName("Memory the plans may use")
        self.budget_label.setWordWrap(True)
        budget.addWidget(self.budget_label, 1)
        self.overview_button = QPushButton("What can this machine &run?")
        self.overview_button.setAccessibleName("Show what this machine can run from the catalog")
        self.overview_button.clicked.connect(self.show_overview)
        budget.addWidget(self.overview_button, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(budget)
        self.status = QLabel("")
        self.status.setAccessibleName("Advisor status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.stack = QStackedWidget()
        self.overview = CatalogOverview()
        self.overview.chosen.connect(lambda cid: self.load(request_for_spec(cid, "catalog")))
        self.overview.download_requested.connect(self.pull_requested)
        self.stack.addWidget(self.overview)
        self.stack.addWidget(self._advice_page())
        lay.addWidget(self.stack, 1)

    def _gb_spin(self, name: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, 2048.0)
        spin.setDecimals(1)
        spin.setSingleStep(1.0)
        spin.setSuffix(" GB")
        spin.setSpecialValueText("as detected")
        spin.setAccessibleName(name)
        spin.valueChanged.connect(self._budget_changed)
        return spin

    def _advice_page(self) -> QWidget:
        page = AdvicePage()
        self.advice_scroll = page
        self.heading, self.ctx_slider, self.ctx_label = page.heading, page.ctx_slider, page.ctx_label
        self.ngl_spin, self.precision_slider, self.precision_label = (
            page.ngl_spin,
            page.precision_slider,
            page.precision_label,
        )
        self.table, self.memory_bar, self.detail, self.reasons_label = (
            page.table,
            page.memory_bar,
            page.detail,
            page.reasons,
        )
        self.action_bar, self.action_button = page.action_bar, page.action_bar.button
        self.ctx_slider.valueChanged.connect(self._ctx_changed)
        self.ngl_spin.valueChanged.connect(lambda _v: self._timer.start())
        self.precision_slider.valueChanged.connect(self._precision_moved)
        self.table.currentCellChanged.connect(lambda row, *_: self._row_selected(row))
        self.action_button.clicked.connect(self._act)
        self.action_bar.alternative_button.clicked.connect(self._pull_alternative)
        self.bench_bar = page.bench_bar
        self.bench_bar.bench_button.clicked.connect(lambda: self._benchmark(every_level=False))
        self.bench_bar.levels_button.clicked.connect(lambda: self._benchmark(every_level=True))
        self.bench_bar.runs_button.clicked.connect(self._show_runs)
        self.bench_bar.finished.connect(lambda _run: self.recompute())  # calibrated speeds, runs beside plans
        return page

    # --- inputs: profile, budget, model --------------------------------------------------------

    def _on_profile(self, profile: Any) -> None:
        self.profile = profile
        self._budget_changed()

    def budget(self) -> Budget:
        """What plans may use: the detected profile with the "what if" sizes applied."""
        return compute.budget_for(self.profile, ram_gb=self.ram_spin.value(), vram_gb=self.vram_spin.value(),
                                  workers=self.ctx.workers)  # fmt: skip

    def _budget_changed(self) -> None:
        if self.profile is None:
            return
        from app.core.units import format_bytes

        try:
            b = self.budget()
        except TailorError as exc:  # a TailorError from apply_overrides: say it, keep the old table
            self.budget_label.setText(str(exc))
            return
        gpu = b.gpus[0] if b.gpus and b.can_offload else None
        lent = [g for g in b.gpus if g.backend == "rpc"]
        local = next((g for g in b.gpus if g.backend != "rpc"), None) if b.can_offload else None
        self.budget_label.setText(f"Plans may use {format_bytes(b.ram_bytes)} of RAM"
                                  + (f" and {format_bytes(local.free_bytes)} of VRAM ({local.name})" if local else "")
                                  + (f", {format_bytes(sum(g.free_bytes for g in lent))} on {len(lent)} worker(s)"
                                     if lent else "")
                                  + ", after keeping some free for the system.")  # fmt: skip
        self.ngl_spin.setEnabled(gpu is not None)
        self.ngl_spin.setToolTip("" if gpu else "No GPU to offload to: give a what-if VRAM to plan with one.")
        if gpu is None:
            self.ngl_spin.setValue(-1)
        if self.model is not None:
            self._timer.start()
        self._maybe_overview()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._maybe_overview()

    def advise_path(self, path: str) -> None:
        """Size up a model of the library (the Library panel's "Advise", through the window)."""
        self.load(request_for_spec(path, "library"))

    def _maybe_overview(self) -> None:
        # Only when the overview is on screen, and once per budget: ranking the catalog takes a
        # second or two of CPU. While a chosen model loads, its page replaces this one anyway.
        if not (self.isVisible() and self.stack.currentIndex() == 0 and self.profile is not None):
            return
        if self._loading is not None:
            return
        try:
            self.overview.rank_for(self.budget())
        except TailorError:  # an impossible "what if": the budget label says why
            return

    def load(self, request: ModelRequest) -> None:
        """Read the model ``request`` names off the GUI thread, then advise on it."""
        from app.core.advice.measured_quality import measured

        self.status.setText(f"Reading {request.label}…")

        def work(report: Any, cancel: Any) -> tuple[ModelInfo, dict[str, Any]]:
            model = request.load()
            return model, measured(model)

        def done(loaded: tuple[ModelInfo, dict[str, Any]]) -> None:
            self.request = request
            self.picker.show_request(request)  # the picker names the model the plans are for
            self._model_loaded(*loaded)

        def failed(msg: str, hint: str, cancelled: bool) -> None:
            self.status.setText(f"{msg} {hint}".strip())  # once, where the user is looking

        def over() -> None:
            self._loading = None

        # a newer pick replaces this one: its answer is dropped, and so is its on_finish
        self._loading = start_worker(work, owner=self, latest="load", on_return=done, on_error=failed,
                                     on_finish=over)  # fmt: skip

    def _model_loaded(self, model: ModelInfo, measured: dict[str, Any]) -> None:
        self.model, self.measured, self._user_quant = model, measured, None
        self.status.setText("")
        self.heading.setText(heading_html(model))
        self.heading.setToolTip(model.source)
        self._steps = compute.context_steps(model)
        default = compute.default_ctx(model)
        self._syncing = True
        self.ctx_slider.setRange(0, len(self._steps) - 1)
        self.ctx_slider.setValue(min(range(len(self._steps)), key=lambda i: abs(self._steps[i] - default)))
        self.ngl_spin.setRange(-1, model.n_layer + 1)
        self.ngl_spin.setValue(-1)
        self._syncing = False
        self.bench_bar.set_available(model.source_kind == "gguf")
        self._show_ctx()
        self.stack.setCurrentIndex(1)
        self.recompute()

    # --- advice -------------------------------------------------------------------------------

    def n_ctx(self) -> int:
        return self._steps[max(0, min(self.ctx_slider.value(), len(self._steps) - 1))]

    def _show_ctx(self) -> None:
        trained = self.model is not None and self.n_ctx() == self.model.n_ctx_train
        self.ctx_label.setText(
            f"{self.n_ctx():,} tokens" + (" (the most it was trained on)" if trained else "")
        )

    def _ctx_changed(self) -> None:
        self._show_ctx()
        if not self._syncing:
            self._timer.start()

    def recompute(self) -> None:
        """Advise on the current model, context, layers and budget; the newest answer wins."""
        self._timer.stop()
        if self.model is None or self.profile is None:
            return
        try:
            query = compute.AdvisorQuery(self.model, self.budget(), self.n_ctx(),
                                         None if self.ngl_spin.value() < 0 else self.ngl_spin.value(),
                                         self.measured)  # fmt: skip
        except TailorError as exc:  # an impossible "what if": the budget label already says why
            self.status.setText(str(exc))
            return
        self.status.setText(f"Working out the plans for {query.n_ctx:,} tokens…")
        start_worker(lambda r, c: compute.compute(query, c), owner=self, latest="advise",
                     on_return=self._show_result,
                     on_error=lambda msg, hint, _c: self.status.setText(f"{msg} {hint}".strip()))  # fmt: skip

    def _show_result(self, result: compute.AdvisorResult) -> None:
        self.result = result
        self.status.setText("")
        self._syncing = True
        own = self.model.file_type if self.model and self.model.source_kind in ("gguf", "hf_gguf") else None
        self.table.show_result(result, self.measured, own)
        self.precision_slider.setRange(0, max(0, len(result.plans) - 1))
        rec = result.recommended
        quant = self._user_quant or (rec.quant if rec else (self.model.file_type if self.model else None))
        row = self.table.row_of(quant) if quant else -1
        self._syncing = False
        self._select_row(row if row >= 0 else 0)
        lines = [*result.notes, *result.advice.reasons]
        html = "".join(f"<li>{escape(t)}</li>" for t in lines)
        html += "".join(f"<li><b>Note:</b> {escape(w)}</li>" for w in result.advice.warnings)
        self.reasons_label.setText(f"<ul style='margin-left:-20px'>{html}</ul>")
        self.updated.emit()

    # --- the selected row ---------------------------------------------------------------------

    def _select_row(self, row: int) -> None:
        self._syncing = True
        self.table.selectRow(row)
        self.table.setCurrentCell(row, 0)
        self.precision_slider.setValue(row)
        self._syncing = False
        self._show_selected()

    def _precision_moved(self, value: int) -> None:
        if not self._syncing:
            self._row_selected(value)

    def _row_selected(self, row: int) -> None:
        if self._syncing or not 0 <= row < len(self.table.plans):
            return
        self._user_quant = self.table.plans[row].quant
        self._select_row(row)

    def selected_plan(self) -> Plan | None:
        return self.table.selected_plan()

    def _show_selected(self) -> None:
        from app.core.advice.reasons import plan_summary
        from app.core.units import format_bytes

        p = self.selected_plan()
        if p is None or self.result is None:
            return
        self.memory_bar.set_bars(memory_bars(p, self.result.query.budget))
        here = self.measured.get(p.quant)
        self.precision_label.setText(f"{p.quant} — {format_bytes(p.file_bytes)}, {p.quality.label}")
        self.detail.setText(plan_summary(p) + (f" Measured here: {measured_text(here)}." if here else ""))
        self._update_action(p)

    # --- the one action -----------------------------------------------------------------------

    def _update_action(self, selected: Plan) -> None:
        self.action_bar.show_action(action_for(self.model, self.result, selected, self.request))

    def _act(self) -> None:
        p = self.selected_plan()
        if self.model is not None and self.result is not None and p is not None:
            perform_action(self, self.model, self.result, p, self.request)

    def _pull_alternative(self) -> None:
        if self.action_bar.alternative is not None:
            self.pull_requested.emit(dict(self.action_bar.alternative))

    # --- benchmarks (app.gui.panels.advisor_bench) ----------------------------------------------

    def _benchmark(self, *, every_level: bool) -> None:
        self.bench_bar.start(bench_job(self, every_level=every_level, settings=self.bench_settings))

    def _show_runs(self) -> None:
        m = self.model
        self.bench_bar.show_recorded(Path(m.source) if m and m.source_kind == "gguf" else None, self.profile)

    # --- first run: the catalog overview --------------------------------------------------------

    def show_overview(self) -> None:
        """Show what this machine can run from the catalog (ranked off-thread, once per budget)."""
        self.stack.setCurrentIndex(0)
        self._maybe_overview()

    def shutdown(self) -> None:
        """Cancel running work, the picker's and the overview's too, and drop whatever it still
        delivers (the widgets may be gone)."""
        self._timer.stop()
        discard_workers(self)

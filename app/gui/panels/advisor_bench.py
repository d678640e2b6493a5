"""The Advisor's benchmark row: "Benchmark" measures the plan of the file on screen, "Benchmark every
level" each quantization of the model the user has (:func:`app.core.library.levels.levels_of`),
"Measured runs" opens the window of results (:mod:`app.gui.panels.bench_window`); while a run goes,
a progress bar says what happens ("Q8_0 (1 of 2): loading 40 %", "measuring 2/3") beside Cancel.

The work is :func:`run_benchmarks`, a plain function on one worker (:mod:`app.gui.workers`): the
core plans each level (:mod:`app.core.advice.bench_levels`, what ``tailorlm bench`` skips, this
skips), the engine measures each in a model process of its own (:func:`app.engine.bench.bench_plan`),
one after another, and the files' recorded runs are read back. Cancel sets the worker's event, which
bench_plan watches: a load is killed at once, a measurement stops after the repetition under way,
and the levels measured so far are kept and shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from app.gui.widgets.flow_layout import FlowLayout
from app.gui.workers import Worker, start_worker

if TYPE_CHECKING:
    from app.core.advice.bench_levels import LevelPlan
    from app.core.advice.profiles import Profile
    from app.engine.bench import BenchResult
    from app.gui.panels.advisor import AdvisorPanel
    from app.gui.panels.bench_window import BenchWindow

# The bar's pace only (the words say the stage): a load is the smaller part of a run — SmolLM2 loads
# in a third of a second of its five here, a 7B from a cold disk in ~10 s of the 30 s budget.
LOAD_SHARE = 0.2
NOT_A_FILE = "Only a GGUF file on this computer can be benchmarked: choose one (File or folder, or Library)."


@dataclass(frozen=True)
class BenchSettings:
    """How much each run measures (None: llama-bench's pp512/tg128 × 3 in at most 30 s, the
    engine's defaults) and on how many threads (0: the engine's choice, as chat)."""

    n_prompt: int | None = None
    n_gen: int | None = None
    reps: int | None = None
    budget_s: float | None = None
    n_threads: int = 0

    def sizes(self) -> dict[str, Any]:
        """bench_plan's keyword arguments for the sizes that are set."""
        names = ("n_prompt", "n_gen", "reps", "budget_s")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class BenchJob:
    """One press of a button: the file, its levels or not, and the advisor's dials."""

    path: Path
    every_level: bool
    n_ctx: int  # the advisor's context
    n_gpu_layers: int | None  # the user's fixed split; None: the planner's
    machine: Any  # the MachineProfile: its budget (as detected, never a what-if) and fingerprint
    library: Any  # the Library (app.core.library.registry), read on the worker: levels_of looks there too
    settings: BenchSettings


@dataclass(frozen=True)
class BenchProgress:
    """Where a run is: level ``index`` of ``count`` (``quant``), its stage and that stage's share."""

    index: int
    count: int
    quant: str
    stage: str  # "find" (looking for the levels), "load" or "measure"
    fraction: float
    reps: int

    def text(self) -> str:
        if self.stage == "find":
            return "Looking for this model's quantizations and planning each…"
        where = f"{self.quant} ({self.index + 1} of {self.count})" if self.count > 1 else self.quant
        if self.stage == "load" and self.fraction < 1.0:
            return f"Benchmarking {where}: loading {round(self.fraction * 100)} %"
        done = round(self.fraction * self.reps) if self.stage == "measure" else 0
        return f"Benchmarking {where}: measuring {min(done + 1, self.reps)}/{self.reps}"

    def overall(self) -> float:
        """The share of the whole job done, for the progress bar."""
        if self.count == 0:
            return 0.0
        share = (
            LOAD_SHARE * self.fraction
            if self.stage == "load"
            else LOAD_SHARE + (1 - LOAD_SHARE) * self.fraction
        )
        return (self.index + (share if self.stage != "find" else 0.0)) / self.count


@dataclass(frozen=True)
class LevelRun:
    """One level of a job: its plan (or why it was skipped) and what was measured."""

    level: LevelPlan
    result: BenchResult | None  # None: skipped, failed, or not reached before a cancel
    error: str = ""  # the load failed or the model process died: what happened, in words


@dataclass(frozen=True)
class BenchRun:
    """What a job gives the window: every level, whether it was cancelled, the recorded runs."""

    path: Path
    levels: tuple[LevelRun, ...]
    cancelled: bool
    history: tuple[Profile, ...]  # the runs of these files that count here, newest first

    @property
    def measured(self) -> list[LevelRun]:
        return [lr for lr in self.levels if lr.result is not None and lr.result.gen_tok_s]


def run_benchmarks(job: BenchJob, report: Callable[[Any], None], cancel: threading.Event) -> BenchRun:
    """Plan, measure and record every level of ``job`` (see the module doc); never touches a widget."""
    from app.core.advice.bench_levels import plan_levels
    from app.core.advice.chat_plan import ChatOverrides
    from app.core.errors import Cancelled, TailorError
    from app.engine import protocol as P
    from app.engine.bench import REPS, bench_plan
    from app.gui.panels.advisor_compute import budget_for

    reps = job.settings.reps or REPS
    paths = [job.path]
    if job.every_level:
        from app.core.library.levels import levels_of

        report(BenchProgress(0, 0, "", "find", 0.0, reps))
        paths = [lv.path for lv in levels_of(job.path, job.library.models() if job.library else ())]
    overrides = ChatOverrides(n_ctx=job.n_ctx, n_gpu_layers=job.n_gpu_layers)
    plans = plan_levels(paths, budget_for(job.machine), overrides)
    todo = [(lp, lp.planned) for lp in plans if lp.planned is not None]
    done: dict[Path, LevelRun] = {}
    cancelled = False
    for i, (lp, planned) in enumerate(todo):
        if cancel.is_set():
            cancelled = True
            break

        def progress(stage: str, fraction: float, i: int = i, quant: str = lp.quant) -> None:
            report(BenchProgress(i, len(todo), quant, stage, fraction, reps))

        load = P.Load.from_plan(planned, n_threads=job.settings.n_threads)
        try:
            result = bench_plan(load, quant=lp.quant, model_name=lp.model_name, cancel=cancel,
                                on_progress=progress, **job.settings.sizes())  # fmt: skip
        except Cancelled:
            cancelled = True
            break
        except TailorError as exc:  # LoadFailed, ProcessDied: say it, go on with the next level
            done[lp.path] = LevelRun(lp, None, exc.user_message())
            continue
        done[lp.path] = LevelRun(lp, result)
        if result.cancelled:
            cancelled = True
            break
    levels = tuple(done.get(lp.path, LevelRun(lp, None)) for lp in plans)
    return BenchRun(job.path, levels, cancelled, recorded_runs(paths, job.machine))


def recorded_runs(paths: Iterable[Path], machine: Any) -> tuple[Profile, ...]:
    """The runs of these files that count on ``machine``, newest first (an unreadable file has none)."""
    from app.core.advice.profiles import file_identity, machine_fingerprint
    from app.core.advice.profiles_db import ProfileStore
    from app.core.errors import TailorError

    machine_id, hardware_class = machine_fingerprint(machine)
    ids = set()
    for path in paths:
        try:
            ids.add(file_identity(path))
        except (TailorError, OSError):
            continue
    with ProfileStore() as store:
        runs = [
            p
            for fid in sorted(ids)
            for p in store.near(fid, machine_id=machine_id, hardware_class=hardware_class)
        ]
    return tuple(sorted(runs, key=lambda p: p.measured.when, reverse=True))


def bench_job(panel: AdvisorPanel, *, every_level: bool, settings: BenchSettings) -> BenchJob | None:
    """The job the panel's model and dials describe; None when it is not a local GGUF file."""
    model = panel.model
    if model is None or model.source_kind != "gguf" or panel.profile is None:
        return None
    ngl = panel.ngl_spin.value()
    return BenchJob(Path(model.source), every_level, panel.n_ctx(), None if ngl < 0 else ngl, panel.profile,
                    panel.ctx.library if every_level else None, settings)  # fmt: skip


class BenchBar(QWidget):
    """The buttons, the progress and Cancel; the panel hands it jobs (:meth:`start`)."""

    # BenchRun: a job ended (every level, or part of them after a cancel); the runs are recorded
    finished = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = FlowLayout()  # wraps onto a second line on a narrow window
        self.bench_button = self._button("&Benchmark", "Benchmark this file's plan here")
        self.levels_button = self._button(
            "Benchmark every l&evel", "Benchmark every quantization of this model you have"
        )
        self.runs_button = self._button("&Measured runs…", "Show the runs measured here")
        self.cancel_button = self._button("Cancel", "Cancel the benchmark")
        for b in (self.bench_button, self.levels_button, self.runs_button, self.cancel_button):
            row.addWidget(b)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)  # the words are in the status line
        self.progress.setAccessibleName("Benchmark progress")
        lay.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setAccessibleName("Benchmark status")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.cancel_button.clicked.connect(self.cancel)
        self.runs_window: BenchWindow | None = None
        self.worker: Worker | None = None
        self._available = False
        self._show_running(False)

    @staticmethod
    def _button(text: str, name: str) -> QPushButton:
        button = QPushButton(text)
        button.setAccessibleName(name)
        return button

    @property
    def running(self) -> bool:
        return self.worker is not None

    def set_available(self, available: bool) -> None:
        """Whether the model on screen can be benchmarked: a GGUF file on this computer."""
        self._available = available
        why = "" if available else NOT_A_FILE
        self.bench_button.setToolTip(why or "Load this file's plan in a model process of its own and measure "
                                     "its speed and memory, as llama-bench does.")  # fmt: skip
        self.levels_button.setToolTip(why or "Find this model's other quantizations (its folder, the library) "
                                      "and measure each that fits; the others are listed with the reason.")  # fmt: skip
        self._show_running(self.running)

    def _show_running(self, running: bool) -> None:
        self.bench_button.setEnabled(self._available and not running)
        self.levels_button.setEnabled(self._available and not running)
        self.runs_button.setEnabled(self._available or self.runs_window is not None)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)

    def start(self, job: BenchJob | None) -> None:
        """Run ``job`` on a worker (one at a time: the buttons are off while it runs)."""
        if job is None or self.running:
            return
        self.progress.setValue(0)
        self._say("Looking for this model's quantizations…" if job.every_level else "Starting the benchmark…")
        self.worker = start_worker(lambda report, cancel: run_benchmarks(job, report, cancel), owner=self,
                                   latest="bench", on_yield=self._progressed, on_return=self._done,
                                   on_error=self._failed, on_finish=self._over, name="benchmark")  # fmt: skip
        self._show_running(True)

    def cancel(self) -> None:
        """Stop the job: a load is killed, a measurement ends after its repetition; what was measured stays."""
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self._say("Cancelling…")

    def _progressed(self, p: BenchProgress) -> None:
        self.progress.setValue(round(1000 * p.overall()))
        self._say(p.text())

    def _done(self, run: BenchRun) -> None:
        measured = run.measured
        speeds = "; ".join(f"{lr.level.quant} writes {lr.result.median('gen') or 0:,.1f} tokens/s"
                           for lr in measured if lr.result is not None)  # fmt: skip
        if run.cancelled:
            planned = sum(lr.level.to_measure for lr in run.levels)
            text = f"Cancelled: {len(measured)} of {planned} level{'s' * (planned != 1)} measured."
        elif measured and all(lr.result is not None and lr.result.busy for lr in measured):
            text = (f"Measured here: {speeds}. Other programs kept the CPUs busy meanwhile, so the advisor does "
                    "not learn from it; measure again when the computer is quiet.")  # fmt: skip
        elif measured:
            text = f"Measured here: {speeds}. The advisor's speeds now follow this machine's benchmarks."
        else:
            text = "Nothing was measured: " + " ".join(lr.error or lr.level.skipped for lr in run.levels)
        self._say(text, announce=True)
        if measured or not run.cancelled:
            self.show_window().show_run(run)
        self.finished.emit(run)

    def _failed(self, message: str, hint: str, cancelled: bool) -> None:
        self._say("Cancelled." if cancelled else f"{message} {hint}".strip(), announce=True)

    def _over(self) -> None:
        self.worker = None
        self._show_running(False)

    def _say(self, text: str, *, announce: bool = False) -> None:
        self.status.setText(text)
        if announce:  # the end of a minute-long job, said by screen readers wherever the focus is
            from app.gui.widgets.live_region import announce as say

            say(self, text)

    def show_window(self) -> BenchWindow:
        """The window of measured runs, made once, raised."""
        from app.gui.panels.bench_window import BenchWindow

        if self.runs_window is None:
            self.runs_window = BenchWindow(self)
        self.runs_window.show()
        self.runs_window.raise_()
        self._show_running(self.running)
        return self.runs_window

    def show_recorded(self, path: Path | None, machine: Any) -> None:
        """The window, with the runs of ``path`` recorded here read off the GUI thread."""
        window = self.show_window()
        if path is None or machine is None:
            return
        start_worker(lambda r, c: recorded_runs([path], machine), owner=self, latest="recorded",
                     on_return=window.show_history, name="recorded runs")  # fmt: skip

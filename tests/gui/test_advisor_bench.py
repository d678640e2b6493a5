"""The Advisor's Benchmark buttons as a user presses them (issue 19): the file's plan measured in a
model process of its own, shown in the Measured runs window and kept as a "bench" profile, the
advisor's speeds calibrated afterwards; Cancel ends a run cleanly; every level of a model measured,
and a level that does not fit listed with the reason. Small measurements on one thread keep it fast."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt

from app.core.advice.bench_levels import plan_levels
from app.core.advice.chat_plan import ChatOverrides
from app.core.advice.profiles import file_identity
from app.core.advice.profiles_db import ProfileStore
from app.core.machine.hardware import detect_machine
from app.gui.context import AppContext
from app.gui.panels import advisor_compute as compute
from app.gui.panels.advisor import AdvisorPanel
from app.gui.panels.advisor_bench import NOT_A_FILE, BenchRun, BenchSettings, LevelRun
from app.gui.panels.advisor_source import request_for_spec
from app.gui.panels.bench_window import BenchWindow
from app.gui.workers import wait_for_workers
from tests.synthetic import quantize_gguf

pytestmark = pytest.mark.slow
WAIT_MS = 120_000
SMALL = BenchSettings(n_prompt=64, n_gen=16, reps=2, budget_s=60, n_threads=1)
COL_GEN, COL_PROMPT = 4, 3  # bench_window.RUN_COLUMNS


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    return detect_machine(measure_bandwidth=False)


@pytest.fixture
def make_panel(qtbot, tmp_path: Path, profile):  # type: ignore[no-untyped-def]
    panels: list[AdvisorPanel] = []

    def make(settings: BenchSettings = SMALL) -> AdvisorPanel:
        ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        ctx._profile = profile  # as if detection had finished
        panel = AdvisorPanel(ctx, bench=settings)
        qtbot.addWidget(panel)
        panel.resize(1200, 900)
        panel.show()
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.shutdown()
    wait_for_workers(WAIT_MS)


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A download folder holding SmolLM2 as Q4_1 (the test model) and Q8_0 (requantized from it)."""
    folder = tmp_path_factory.mktemp("levels")
    shutil.copyfile(smollm2_path, folder / "smollm2-q4_1.gguf")
    quantize_gguf(smollm2_path, folder / "smollm2-q8_0.gguf", "Q8_0", allow_requantize=True, nthread=1)
    return folder


def _opened(qtbot, panel: AdvisorPanel, path: Path) -> None:  # type: ignore[no-untyped-def]
    """The file in the advisor, at its shortest context (512 tokens: a small, quick load)."""
    panel.load(request_for_spec(str(path)))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    first = panel.result
    panel.ctx_slider.setValue(0)
    qtbot.waitUntil(lambda: panel.result is not first and panel.result.query.n_ctx == 512, timeout=WAIT_MS)


def _press(qtbot, button) -> None:  # type: ignore[no-untyped-def]
    assert button.isEnabled() and button.isVisible(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _gen_speeds(window: BenchWindow) -> dict[str, float]:
    """Quant → the median generation speed the runs table shows ("52.3 (50.1–54.0)")."""
    t = window.runs_table
    return {t.item(r, 0).text(): float(t.item(r, COL_GEN).text().split()[0].replace(",", ""))
            for r in range(t.rowCount())}  # fmt: skip


def _model_processes() -> list[int]:
    """This test process's children that are still running (a model process left behind)."""
    me, out = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[1] == me and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def test_benchmark_measures_the_files_plan_shows_it_and_calibrates_the_advisor(  # type: ignore[no-untyped-def]
    make_panel, qtbot, smollm2_path: Path, profile
) -> None:
    panel = make_panel()
    _opened(qtbot, panel, smollm2_path)
    before = panel.result
    assert before.query.budget.speed_calibration == ()  # nothing benchmarked in this home yet
    bar = panel.bench_bar
    _press(qtbot, bar.bench_button)
    assert bar.cancel_button.isVisible() and not bar.bench_button.isEnabled()  # one run at a time
    seen: list[str] = []
    qtbot.waitUntil(lambda: seen.append(bar.status.text()) or not bar.running, timeout=WAIT_MS)
    assert any("loading" in s or "measuring" in s for s in seen)
    assert bar.status.text().startswith("Measured here: Q4_1 writes"), bar.status.text()
    window = bar.runs_window
    assert window is not None and window.isVisible()
    speeds = _gen_speeds(window)
    assert list(speeds) == ["Q4_1"] and speeds["Q4_1"] > 0
    row = [window.runs_table.item(0, c).text() for c in range(window.runs_table.columnCount())]
    assert row[1] == "512" and float(row[COL_PROMPT].split()[0].replace(",", "")) > 0 and "MiB" in row[6]
    assert window.chart.bars == (("Q4_1", pytest.approx(speeds["Q4_1"], rel=0.01)),)
    assert "Q4_1" in window.chart.accessibleDescription()
    with ProfileStore() as store:
        [kept] = store.all()
    assert (kept.kind, kept.key.quant, kept.key.n_ctx, kept.measured.reps) == ("bench", "Q4_1", 512, 2)
    assert kept.key.file_id == file_identity(smollm2_path) and kept.measured.gen_tok_s
    assert window.history_table.rowCount() == 1 and window.history_table.item(0, 1).text() == "benchmark"
    # the advisor computed its plans again, with this machine's calibrated speeds
    qtbot.waitUntil(lambda: panel.result is not before and panel.result.query.budget.speed_calibration != (),
                    timeout=WAIT_MS)  # fmt: skip
    assert panel.result.plan_for("Q4_1").speed.calibrated
    assert bar.bench_button.isEnabled() and not bar.cancel_button.isVisible()
    assert not _model_processes()
    window.close()  # Measured runs opens it again, the recorded runs read afresh
    window.history_table.setRowCount(0)
    _press(qtbot, bar.runs_button)
    qtbot.waitUntil(lambda: window.isVisible() and window.history_table.rowCount() == 1, timeout=WAIT_MS)


def test_cancel_ends_a_run_cleanly_at_any_point(make_panel, qtbot, smollm2_path: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel(replace(SMALL, n_gen=64, reps=50, budget_s=300))  # minutes, unless cancelled
    _opened(qtbot, panel, smollm2_path)
    bar = panel.bench_bar
    _press(qtbot, bar.bench_button)  # cancelled at once: before or while the model loads
    _press(qtbot, bar.cancel_button)
    qtbot.waitUntil(lambda: not bar.running, timeout=WAIT_MS)
    assert bar.status.text().startswith("Cancelled"), bar.status.text()
    with ProfileStore() as store:
        assert store.all() == []  # nothing measured, nothing kept
    assert not _model_processes()
    _press(qtbot, bar.bench_button)  # cancelled while measuring, after a repetition
    qtbot.waitUntil(lambda: "measuring 2/50" in bar.status.text(), timeout=WAIT_MS)
    _press(qtbot, bar.cancel_button)
    assert bar.status.text() == "Cancelling…" and not bar.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not bar.running, timeout=30_000)  # not the minutes the 50 repetitions take
    assert bar.status.text() == "Cancelled: 1 of 1 level measured.", bar.status.text()
    window = bar.runs_window
    assert window is not None and list(_gen_speeds(window)) == ["Q4_1"]  # what was measured is shown
    assert "Cancelled" in window.heading.text()
    with ProfileStore() as store:
        [kept] = store.all()
    assert kept.kind == "bench" and 1 <= (kept.measured.reps or 0) < 50
    assert (
        bar.bench_button.isEnabled() and bar.levels_button.isEnabled() and not bar.cancel_button.isVisible()
    )
    assert not _model_processes()


def test_every_level_of_the_model_is_measured(make_panel, qtbot, levels: Path) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    _opened(qtbot, panel, levels / "smollm2-q4_1.gguf")
    bar = panel.bench_bar
    _press(qtbot, bar.levels_button)
    seen: list[str] = []
    qtbot.waitUntil(lambda: seen.append(bar.status.text()) or not bar.running, timeout=WAIT_MS)
    assert any("(2 of 2)" in s for s in seen), seen
    window = bar.runs_window
    assert window is not None
    speeds = _gen_speeds(window)
    assert list(speeds) == ["Q8_0", "Q4_1"] and all(v > 0 for v in speeds.values())  # largest file first
    assert [name for name, _ in window.chart.bars] == ["Q8_0", "Q4_1"] and not window.notes.isVisible()
    with ProfileStore() as store:
        kept = store.all()
    assert sorted(p.key.quant for p in kept) == ["Q4_1", "Q8_0"] and {p.kind for p in kept} == {"bench"}
    assert window.history_table.rowCount() == 2
    assert not _model_processes()


def test_a_level_that_does_not_fit_is_listed_with_the_reason(qtbot, levels: Path, profile) -> None:  # type: ignore[no-untyped-def]
    paths = [levels / "smollm2-q8_0.gguf", levels / "smollm2-q4_1.gguf"]
    roomy = plan_levels(paths, compute.budget_for(profile), ChatOverrides(n_ctx=512))
    assert [lp.quant for lp in roomy] == ["Q8_0", "Q4_1"] and all(lp.to_measure for lp in roomy)
    assert {lp.model_name for lp in roomy} == {roomy[0].model_name} and "/" not in roomy[0].model_name
    ram = {lp.quant: lp.planned.plan.ram_bytes for lp in roomy if lp.planned is not None}
    between = replace(compute.budget_for(profile), ram_bytes=(ram["Q8_0"] + ram["Q4_1"]) // 2, gpus=())
    q8, q4 = plan_levels(paths, between, ChatOverrides(n_ctx=512))
    assert q4.to_measure and not q8.to_measure and "cannot give it that" in q8.skipped
    window = BenchWindow()
    qtbot.addWidget(window)
    window.show_run(BenchRun(paths[1], (LevelRun(q8, None), LevelRun(q4, None)), False, ()))
    assert not window.notes.isHidden() and "Q8_0 (smollm2-q8_0.gguf)" in window.notes.text()
    assert "cannot give it that" in window.notes.text() and window.runs_table.rowCount() == 0


def test_only_a_local_gguf_file_can_be_benchmarked(make_panel, qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = make_panel()
    bar = panel.bench_bar
    assert not bar.bench_button.isEnabled()  # nothing chosen yet
    panel.load(request_for_spec("llama-3.1-8b-instruct", "catalog"))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=WAIT_MS)
    assert not bar.bench_button.isEnabled() and not bar.levels_button.isEnabled()
    assert bar.bench_button.toolTip() == NOT_A_FILE
    for b in (bar.bench_button, bar.levels_button, bar.runs_button, bar.cancel_button):
        assert b.accessibleName(), b.text()

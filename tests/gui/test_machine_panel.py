"""The Machine panel on this machine: the real profile's CPU and RAM appear, the live charts fill
with samples while the panel is shown (and stop when it is hidden), and the model's share from the
model process is charted beside the machine's use."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.panels.machine import MachinePanel


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path):
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = MachinePanel(ctx)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()


def test_shows_the_real_cpu_and_ram_and_charts_samples(panel: MachinePanel, qtbot: QtBot) -> None:
    qtbot.waitUntil(lambda: panel.ctx.profile is not None, timeout=30_000)
    profile = panel.ctx.profile
    assert profile.cpu.model in panel.facts["cpu"].text()
    assert f"{profile.cpu.physical_cores} cores" in panel.facts["cpu"].text()
    assert format_bytes(profile.ram_total_bytes) in panel.facts["ram"].text()
    for isa in profile.cpu.isa:
        assert isa in panel.facts["isa"].text()
    assert panel.facts["build"].text().startswith(("llama-cpp-python", "llama.cpp"))
    assert len(panel.gpu_charts) == len([g for g in profile.gpus if g.vendor != "apple"])

    qtbot.waitUntil(lambda: len(panel.ram_chart.values) >= 2, timeout=5_000)
    assert 0 < panel.ram_chart.values[-1] <= profile.ram_total_bytes
    assert 0.0 <= panel.cpu_chart.values[-1] <= 100.0
    assert "RAM:" in panel.ram_chart.summary.text() and "of" in panel.ram_chart.summary.text()
    assert len(panel.ram_chart.line.getData()[0]) == len(panel.ram_chart.values)

    # the model process reports its resident memory: it is charted as the model's share
    panel.ctx.engine_metrics.emit({"rss_bytes": 300 << 20, "gen_tok_s": 12.0})
    n = len(panel.ram_chart.values)
    qtbot.waitUntil(lambda: len(panel.ram_chart.values) > n, timeout=5_000)
    assert panel.ram_chart.model_values[-1] == 300 << 20
    assert "the model 300 MiB" in panel.ram_chart.summary.text()

    # hidden: no more sampling (a laptop's GPU may sleep)
    panel.hide()
    n = len(panel.ram_chart.values)
    qtbot.wait(1500)
    assert len(panel.ram_chart.values) == n and not panel.timer.isActive()


def test_every_control_is_named_and_reachable_by_keyboard(panel: MachinePanel) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    for w in panel.findChildren(QPushButton):
        assert w.accessibleName() and w.focusPolicy() != Qt.FocusPolicy.NoFocus, w.text()
    for label in panel.facts.values():  # Alt+letter on the row's title moves the focus to the fact
        assert label.accessibleName() and label.focusPolicy() != Qt.FocusPolicy.NoFocus

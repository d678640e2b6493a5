"""The Machine panel on this machine: the real profile's CPU and RAM appear, the live charts fill
with samples from the shared sampler child while the panel is shown (and it stops when the panel
is hidden), the model's share from the model process is charted beside the machine's use, and
what could not be measured shows as "—" — with a fake NVML only at the pynvml boundary of the
probe and sampler children."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from app.core.machine.sampler_client import shared_sampler
from app.core.units import GIB, MIB, format_bytes
from app.gui.context import AppContext
from app.gui.panels.machine import MachinePanel, describe_profile
from tests.core.machine.fake_nvml import H100, child_pythonpath


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path) -> Iterator[MachinePanel]:
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    widget = MachinePanel(ctx)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitUntil(lambda: ctx.profile is not None, timeout=60_000)  # detection: the probe child
    yield widget
    widget.shutdown()
    assert not shared_sampler().running  # the panel was its only subscriber


def test_shows_the_real_cpu_and_ram_and_charts_samples(panel: MachinePanel, qtbot: QtBot) -> None:
    profile = panel.ctx.profile
    assert profile.cpu.model in panel.facts["cpu"].text()
    assert f"{profile.cpu.physical_cores} cores" in panel.facts["cpu"].text()
    assert format_bytes(profile.ram_total_bytes) in panel.facts["ram"].text()
    for isa in profile.cpu.isa:
        assert isa in panel.facts["isa"].text()
    assert panel.facts["build"].text().startswith(("llama-cpp-python", "llama.cpp"))
    assert len(panel.gpu_charts) == len([g for g in profile.gpus if g.vendor != "apple"])

    qtbot.waitUntil(lambda: len(panel.ram_chart.values) >= 2, timeout=10_000)
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

    # hidden: no more sampling (a laptop's GPU may sleep), and the sampler child is stopped
    panel.hide()
    n = len(panel.ram_chart.values)
    qtbot.wait(1500)
    assert len(panel.ram_chart.values) == n and not panel.timer.isActive()
    assert not shared_sampler().running


def test_an_nvidia_gpu_is_charted_and_unattributable_vram_shows_as_unknown(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NVML lists another process only (as in a container): the model's VRAM cannot be attributed
    monkeypatch.setenv("PYTHONPATH", child_pythonpath(tmp_path, [{**H100, "procs": [(1, 5 * GIB)]}]))
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    panel = MachinePanel(ctx)
    qtbot.addWidget(panel)
    panel.show()
    try:
        qtbot.waitUntil(lambda: ctx.profile is not None, timeout=60_000)
        (chart,) = panel.gpu_charts.values()
        assert H100["name"] in panel.facts["gpus"].text()
        panel.ctx.engine_metrics.emit({"rss_bytes": 300 << 20, "vram_bytes": None})
        qtbot.waitUntil(lambda: len(chart.values) >= 2, timeout=10_000)
        assert chart.values[-1] == H100["total"] - H100["free"]  # the GPU's use is known
        text = chart.summary.text()
        assert f"of {format_bytes(81559 * MIB)} used; the model —" in text, text  # not "0 B"
    finally:
        panel.shutdown()


def test_unknown_profile_figures_show_as_a_dash(panel: MachinePanel) -> None:
    from dataclasses import replace

    from app.core.machine.gpus import GpuInfo

    gpu = GpuInfo(0, "NVIDIA GPU 0", "nvidia", "cuda", vram_total_bytes=None, vram_free_bytes=None)
    facts = describe_profile(replace(panel.ctx.profile, gpus=(gpu,)))
    assert facts["gpus"] == "NVIDIA GPU 0 (CUDA): — VRAM"


def test_every_control_is_named_and_reachable_by_keyboard(panel: MachinePanel) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QPushButton

    for w in panel.findChildren(QPushButton):
        assert w.accessibleName() and w.focusPolicy() != Qt.FocusPolicy.NoFocus, w.text()
    for label in panel.facts.values():  # Alt+letter on the row's title moves the focus to the fact
        assert label.accessibleName() and label.focusPolicy() != Qt.FocusPolicy.NoFocus


def test_a_small_models_share_is_labelled_and_drawn_tall_enough_to_see_with_its_cpu_share(
    panel: MachinePanel, qtbot: QtBot, smollm2_path: Path
) -> None:
    """A real model process (SmolLM2, ~200 MiB of a machine's RAM: a pixel or two of the axis)
    writing tokens: its RAM share is labelled and at least MIN_SHARE_PX tall, and its CPU share —
    which the panel reads from the process itself — is charted and labelled too."""
    import math
    import threading

    import psutil
    from PySide6.QtCore import QPointF

    from app.engine import protocol as P
    from app.engine.client import EngineClient
    from app.gui.panels.machine import MIN_SHARE_PX

    stop = threading.Event()
    with EngineClient() as engine:
        engine.load(P.Load(model_path=str(smollm2_path), n_ctx=512, n_threads=1))
        assert engine.pid is not None
        rss = psutil.Process(engine.pid).memory_info().rss

        def write() -> None:  # keep the model busy until the chart has seen it
            while not stop.is_set():
                for _ in engine.generate("Once upon a time", P.Sampling(temperature=0, max_tokens=32)):
                    pass

        writer = threading.Thread(target=write)
        writer.start()
        try:
            panel.ctx.engine_metrics.emit({"rss_bytes": rss})  # what the chat sends while it runs
            cpu = panel.cpu_chart

            def cpu_share_seen() -> bool:
                return (
                    bool(cpu.model_values)
                    and math.isfinite(cpu.model_values[-1])
                    and cpu.model_values[-1] > 0
                )

            qtbot.waitUntil(cpu_share_seen, timeout=20_000)
        finally:
            stop.set()
            writer.join(30)
    assert 0 < cpu.model_values[-1] <= cpu.values[-1] + 5  # a part of the machine's use (± sampling)
    assert f"the model {cpu.model_values[-1]:.0f} % of the CPU" in cpu.summary.text()
    assert cpu.share.isVisible() and "% of the CPU" in cpu.share.toPlainText()

    ram = panel.ram_chart
    assert ram.model_values[-1] == rss  # the true figure is kept; only the drawing has a floor
    assert panel.subscription is not None and panel.subscription.latest is not None
    total = panel.subscription.latest.ram_total_bytes  # the total the sample said
    share = f"{format_bytes(rss)} ({100 * rss / total:.1f} % of RAM)"
    assert f"the model {share}" in ram.summary.text()
    assert ram.share.isVisible() and ram.share.toPlainText() == f"the model: {share}"
    box = ram.widget.getViewBox()
    xs, ys = ram.area.getData()
    top, bottom = box.mapViewToScene(QPointF(xs[-1], ys[-1])), box.mapViewToScene(QPointF(xs[-1], 0))
    assert bottom.y() - top.y() >= MIN_SHARE_PX - 0.5  # seen, not a one-pixel line
    label = ram.share.mapRectToScene(ram.share.boundingRect())
    assert box.sceneBoundingRect().contains(label.center())  # the label lies inside the plot

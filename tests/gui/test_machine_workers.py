"""The Machine panel's workers: a real worker on this machine is asked and listed with its memory,
a dead one is listed as left out, the list is remembered, and the advisor's budget then includes
the worker's memory — what the chat plans with too."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from pytestqt.qtbot import QtBot

from app.core.units import format_bytes
from app.gui.context import AppContext
from app.gui.panels.advisor_compute import budget_for
from app.gui.panels.machine_workers import WorkersBox
from app.gui.workers import wait_for_workers
from tests.test_workers import WorkerProc, _free_port, pytestmark  # noqa: F401 (skipped without RPC)


def test_the_box_lists_a_live_worker_and_a_dead_one_and_plans_include_the_live(
    qtbot: QtBot, tmp_path: Path
) -> None:
    settings = str(tmp_path / "settings.ini")
    ctx = AppContext(QSettings(settings, QSettings.Format.IniFormat))
    worker = WorkerProc(200 * 2**20)
    dead = f"127.0.0.1:{_free_port()}"
    try:
        box = WorkersBox(ctx)
        qtbot.addWidget(box)
        box.edit.setText(f"{worker.endpoint}, {dead}")
        with qtbot.waitSignal(ctx.workers_ready, timeout=20_000):
            qtbot.mouseClick(box.check_button, Qt.MouseButton.LeftButton)
        text = box.list.text()
        assert f"{worker.endpoint} device 0: {format_bytes(200 * 2**20)} free" in text
        assert f"{dead}: not reachable" in text and "left out" in text
        # remembered: a new context reads the same list
        assert (
            AppContext(QSettings(settings, QSettings.Format.IniFormat)).workers_text
            == f"{worker.endpoint}, {dead}"
        )
        from app.core.machine.hardware import detect_machine

        budget = budget_for(detect_machine(measure_bandwidth=False), workers=ctx.workers)
        assert [g.endpoint for g in budget.gpus if g.backend == "rpc"] == [worker.endpoint]
    finally:
        worker.stop()
        wait_for_workers(10_000)


def test_a_list_that_does_not_parse_is_an_error_and_is_not_saved(qtbot: QtBot, tmp_path: Path) -> None:
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    box = WorkersBox(ctx)
    qtbot.addWidget(box)
    box.edit.setText("host:notaport")
    with qtbot.waitSignal(ctx.error, timeout=5_000) as got:
        box.check()
    assert "port must be a number" in got.args[0]
    assert ctx.workers_text == "" and box.list.text().startswith("No workers")


def test_a_worker_killed_mid_answer_leaves_the_window_up_and_load_again_plans_without_it(
    qtbot: QtBot, tmp_path: Path, smollm2_path: Path
) -> None:
    import os
    import signal

    from app.gui.panels.chat import ChatPanel

    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    workers = [WorkerProc(200 * 2**20), WorkerProc(200 * 2**20)]
    panel = ChatPanel(ctx, n_threads=1)
    qtbot.addWidget(panel)
    panel.show()
    try:
        with qtbot.waitSignal(ctx.workers_ready, timeout=20_000):
            ctx.check_workers(",".join(w.endpoint for w in workers))
        errors: list[str] = []
        ctx.error.connect(lambda m, h: errors.append(m))
        panel.settings_panel.max_tokens.setValue(100_000)
        ctx.open_chat.emit(str(smollm2_path), {"n_ctx": 1024, "n_gpu_layers": 20, "type_k": "F16"})
        qtbot.waitUntil(lambda: panel.state == "ready", timeout=60_000)
        assert panel.model is not None and panel.model.load.rpc_devices == tuple(w.endpoint for w in workers)
        panel.input.setPlainText("Count to a thousand.")
        qtbot.keyClick(panel.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        qtbot.waitUntil(lambda: panel.meter.tokens >= 3, timeout=30_000)
        os.kill(workers[1].proc.pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: panel.state == "empty", timeout=30_000)  # the window is up; the model is gone
        assert workers[1].endpoint in panel.error.text() and "stopped answering" in panel.error.text()
        qtbot.mouseClick(panel.load_again_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.state == "ready", timeout=60_000)
        assert panel.model is not None and panel.model.load.rpc_devices == (workers[0].endpoint,)
    finally:
        panel.shutdown()
        for w in workers:
            w.stop()
        wait_for_workers(10_000)

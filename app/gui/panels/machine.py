"""The machine at a glance: what was detected (CPU, RAM, GPUs, what the llama.cpp build can offload
to) and live charts of RAM, CPU and per-GPU VRAM use, with the loaded model's share filled in.

The numbers come from the machine's shared live sampler (:mod:`app.core.machine.sampler_client`),
a child process that the chat's memory monitor reads too: NVML never opens in the window's
process, and the GUI thread only copies the latest sample into the charts. The panel subscribes
only while it is visible, so a hidden panel never keeps a discrete GPU awake. Figures that could
not be read show as "—". pyqtgraph is imported when the panel is built.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QPalette, QShowEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.machine.sampler_client import Subscription, shared_sampler
from app.core.units import GIB, format_bytes
from app.gui.context import AppContext
from app.gui.panels.machine_model_cpu import ModelCpu
from app.gui.panels.machine_workers import WorkersBox

SAMPLE_INTERVAL_S = 1.0
HISTORY = 120  # points per chart: two minutes at one sample a second
MIN_SHARE_PX = 4  # the model's share is drawn at least this tall: a 251 MiB share of 24 GiB is ~1 px
UNKNOWN = "—"  # a figure that could not be read (house style: never 0)
_SELECTABLE = Qt.TextInteractionFlag.TextSelectableByKeyboard | Qt.TextInteractionFlag.TextSelectableByMouse
GpuKey = tuple[str, int]  # (vendor, index within the vendor), as GpuInfo names a GPU


def _bytes(n: int | None) -> str:
    return format_bytes(n) if n is not None else UNKNOWN


class Chart:
    """One live plot: a line for the whole machine and a filled area for the loaded model's share,
    with that share in words beside its newest point — 251 MiB on a 24 GiB axis is one pixel, so
    the area is drawn at least MIN_SHARE_PX tall and the label says the figure."""

    def __init__(self, pg: Any, title: str, *, label: str, y_max: float, memory: bool = True) -> None:
        self.pg, self.label, self.memory = pg, label, memory  # memory: bytes in GiB; else a percentage
        self.scale = GIB if memory else 1.0
        self.widget = pg.PlotWidget(title=title)
        self.widget.setAccessibleName(f"{title} chart")
        self.widget.viewport().setAccessibleName(f"{title} chart")  # focusable too (pyqtgraph)
        self.widget.setMinimumHeight(150)
        self.widget.setMenuEnabled(False)
        self.widget.setMouseEnabled(x=False, y=False)
        self.widget.hideButtons()
        self.widget.setLabel("left", "GiB" if memory else "%")
        self.widget.setLabel("bottom", "seconds ago")
        self.widget.setXRange(-HISTORY * SAMPLE_INTERVAL_S, 0, padding=0)
        self.widget.setYRange(0, y_max / self.scale, padding=0.02)
        self.widget.addLegend(offset=(5, 5))
        self.times: deque[float] = deque(maxlen=HISTORY)
        self.values: deque[float] = deque(maxlen=HISTORY)  # raw: bytes or percent
        self.model_values: deque[float] = deque(maxlen=HISTORY)
        self.line = self.widget.plot(name="whole machine")
        self.line.setZValue(1)  # above the model's filled area
        # "finite": an unknown share (NaN) is a gap in the area, not a drop to 0
        self.area = self.widget.plot(fillLevel=0, name="the loaded model", connect="finite")
        self.share = pg.TextItem(anchor=(1, 1))  # its bottom-right corner at the newest point
        self.share.setZValue(2)
        self.share.hide()
        self.widget.addItem(self.share)
        self.summary = QLabel("Waiting for the first sample…")
        self.summary.setAccessibleName(f"{title} now")
        self.summary.setTextInteractionFlags(_SELECTABLE)
        self.restyle()

    def restyle(self, palette: QPalette | None = None) -> None:
        """``palette``'s colours (light or dark; by default the plot's own) for the plot and series."""
        from app.gui.theme import style_plot

        c = style_plot(self.widget, palette)
        self.line.setPen(self.pg.mkPen(c.machine, width=2))
        self.area.setPen(self.pg.mkPen(c.model, width=2))
        self.area.setBrush(c.fill(c.model))
        self.share.setColor(c.model)
        self.share.fill = self.pg.mkBrush(c.fill(c.background, 200))  # legible over the lines
        self.share.update()

    def append(
        self,
        t: float,
        value: float,
        *,
        total: int | None = None,
        model: float | None = None,
        with_model: bool = False,
    ) -> None:
        """One sample; the summary line says it in words for screen readers and tests.

        ``with_model``: a model is loaded, so its share is drawn — or, when ``model`` is None
        (not attributable), a gap in the area and "—" in words. ``model``: bytes, or for the CPU
        chart a percentage of the whole machine.
        """
        self.times.append(t)
        self.values.append(value)
        self.model_values.append(float(model) if model is not None else math.nan if with_model else 0.0)
        share = self._share_text(model, total) if with_model else ""
        if self.memory:
            text = f"{self.label}: {format_bytes(value)} of {_bytes(total)} used"
        else:
            text = f"{self.label}: {value:.0f} % busy"
        text += f"; the model {share}" if with_model else ""
        self.summary.setText(text)
        self.widget.setAccessibleDescription(text)
        self.share.setText(f"the model: {share}")
        self.share.setVisible(with_model)

    def _share_text(self, model: float | None, total: int | None) -> str:
        """ "251 MiB (1.0 % of RAM)", "38 % of the CPU", "—"."""
        if model is None:
            return UNKNOWN
        if not self.memory:
            return f"{model:.0f} % of the CPU"
        of = f" ({100 * model / total:.1f} % of {self.label})" if total else ""
        return f"{format_bytes(int(model))}{of}"

    def min_share(self) -> float:
        """MIN_SHARE_PX in the plot's units at its present size (0 before it is laid out)."""
        box = self.widget.getViewBox()
        low, high = box.viewRange()[1]
        height_px = box.height()
        return MIN_SHARE_PX * (high - low) / height_px if height_px > 0 else 0.0

    def redraw(self, now: float) -> None:
        xs = [t - now for t in self.times]
        self.line.setData(xs, [v / self.scale for v in self.values])
        floor = self.min_share()
        # a share too thin to see is drawn MIN_SHARE_PX tall; the label says its real figure
        shown = [max(v / self.scale, floor) if v > 0 else v / self.scale for v in self.model_values]
        self.area.setData(xs, shown)
        if self.share.isVisible() and shown:
            y = shown[-1] if math.isfinite(shown[-1]) else 0.0
            low, high = self.widget.getViewBox().viewRange()[1]
            # near the top the label would leave the plot: hang it below the point instead
            self.share.setAnchor((1, 0) if y > low + 0.8 * (high - low) else (1, 1))
            self.share.setPos(0, y)


def _gb_s(bytes_s: float) -> str:
    return f"{bytes_s / 1e9:.0f} GB/s"


def describe_profile(p: Any) -> dict[str, str]:
    """One line of plain text per fact of a MachineProfile, keyed like the panel's rows."""
    cpu = p.cpu
    gpus = []
    for g in p.gpus:
        total = _bytes(g.vram_total_bytes)
        free = f", {format_bytes(g.vram_free_bytes)} free" if g.vram_free_bytes is not None else ""
        extra = [f"driver {g.driver_version}"] if g.driver_version else []
        extra += [f"compute {g.compute_capability}"] if g.compute_capability else []
        extra += [f"{_gb_s(g.bandwidth_bytes_s)}"] if g.bandwidth_bytes_s else []
        kind = "shared with RAM" if g.unified_memory else "VRAM"
        gpus.append(
            f"{g.name} ({g.backend.upper()}): {total} {kind}{free}"
            + (f"; {', '.join(extra)}" if extra else "")
        )
    off = p.offload
    if not off.installed:
        build = "llama.cpp (llama-cpp-python) is not installed: nothing can run yet."
    elif off.build_supports_gpu:
        build = (
            f"llama-cpp-python {off.llama_cpp_version}: can offload to {', '.join(off.backends) or 'a GPU'}."
        )
    else:
        build = f"llama-cpp-python {off.llama_cpp_version}: CPU only (this build cannot offload to a GPU)."
    devices = ", ".join(f"{d.name} ({d.description})" for d in off.devices)
    bw = "measured" if p.ram_bandwidth_measured else "assumed, not measured"
    return {
        "cpu": f"{cpu.model} — {cpu.physical_cores} cores, {cpu.logical_cores} threads ({cpu.arch})",
        "isa": ", ".join(cpu.isa) or "none that llama.cpp uses",
        "ram": f"{format_bytes(p.ram_total_bytes)} total, {format_bytes(p.ram_available_bytes)} available; "
        f"{_gb_s(p.ram_bandwidth_bytes_s)} ({bw})",
        "gpus": "\n".join(gpus) or "No GPU detected: models run on the CPU.",
        "build": build + (f"\nDevices: {devices}" if devices else ""),
        "notes": "\n".join([*p.notes, *p.overrides]) or "—",
    }


_ROWS = (
    ("cpu", "&CPU"),
    ("isa", "&Instruction sets"),
    ("ram", "&RAM"),
    ("gpus", "G&PUs"),
    ("build", "&llama.cpp build"),
    ("notes", "&Notes"),
)


class MachinePanel(QWidget):
    """The hardware profile and live use; the profile comes from ``ctx.detect()`` (off-thread), the
    live use from the shared sampler child."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        import pyqtgraph as pg

        self.ctx, self._pg = ctx, pg
        outer = QVBoxLayout(self)
        head = QHBoxLayout()
        self.status = QLabel("Detecting the hardware…")
        self.status.setAccessibleName("Detection status")
        self.status.setWordWrap(True)
        self.refresh_button = QPushButton("Detect a&gain")
        self.refresh_button.setAccessibleName("Detect the hardware again")
        self.refresh_button.clicked.connect(self.refresh)
        head.addWidget(self.status, 1)
        head.addWidget(self.refresh_button)
        outer.addLayout(head)
        facts = QGroupBox("This machine")
        form = QFormLayout(facts)
        self.facts: dict[str, QLabel] = {}
        for key, title in _ROWS:
            label = QLabel("…")
            label.setWordWrap(True)
            label.setAccessibleName(title.replace("&", ""))
            label.setTextInteractionFlags(_SELECTABLE)
            label.setTextFormat(Qt.TextFormat.PlainText)
            buddy = QLabel(title)
            buddy.setBuddy(label)  # Alt+letter moves the keyboard focus to the fact
            form.addRow(buddy, label)
            self.facts[key] = label
        outer.addWidget(facts)
        self.workers_box = WorkersBox(ctx)
        outer.addWidget(self.workers_box)
        live = QGroupBox("Live use (the loaded model's share filled in and labelled)")
        self.grid = QGridLayout(live)
        outer.addWidget(live, 1)
        self.ram_chart = Chart(pg, "RAM used", label="RAM", y_max=GIB)
        self.cpu_chart = Chart(pg, "CPU use", label="CPU", y_max=100.0, memory=False)
        self.gpu_charts: dict[GpuKey, Chart] = {}
        self._place_charts()
        # the model process's own memory, via ctx.engine_metrics; None inside: not measured
        self.model_loaded = False
        self.model_rss_bytes: int | None = None
        self.model_vram_bytes: int | None = None
        self.model_vram_asked = False  # the machine has a GPU to ask for the model's VRAM
        self.model_cpu = ModelCpu()  # the model process's CPU share, read while a model is loaded
        self.subscription: Subscription | None = None  # held while the panel is visible
        self._last_t = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(int(SAMPLE_INTERVAL_S * 1000))
        self.timer.timeout.connect(self.tick)
        ctx.profile_ready.connect(self.show_profile)
        ctx.engine_metrics.connect(self.on_metrics)
        ctx.detect()

    # --- the profile ----------------------------------------------------------------------------

    def refresh(self) -> None:
        self.status.setText("Detecting the hardware…")
        self.ctx.detect(refresh=True)

    def show_profile(self, profile: Any) -> None:
        for key, text in describe_profile(profile).items():
            self.facts[key].setText(text)
        self.status.setText("Detected. Live use is sampled once a second while this panel is shown.")
        self.ram_chart.widget.setYRange(0, profile.ram_total_bytes / GIB, padding=0.02)
        gpus = {(g.vendor, g.index): g for g in profile.gpus if not g.hypothetical and g.vendor != "apple"}
        if set(gpus) != set(self.gpu_charts):
            for chart in self.gpu_charts.values():
                for w in (chart.widget, chart.summary):
                    self.grid.removeWidget(w)
                    w.deleteLater()
            self.gpu_charts = {
                key: Chart(self._pg, f"VRAM used — {g.name}", label="VRAM", y_max=g.vram_total_bytes or GIB)
                for key, g in gpus.items()
            }
            self._place_charts()

    def _place_charts(self) -> None:
        charts = [self.ram_chart, self.cpu_chart, *self.gpu_charts.values()]
        for i, chart in enumerate(charts):
            row, col = divmod(i, 2)
            self.grid.addWidget(chart.widget, 2 * row, col)
            self.grid.addWidget(chart.summary, 2 * row + 1, col)

    # --- live numbers ---------------------------------------------------------------------------

    def on_metrics(self, m: dict[str, Any]) -> None:
        """The model process's own memory; an empty dict: no model is loaded."""
        self.model_loaded = "rss_bytes" in m
        self.model_rss_bytes = m.get("rss_bytes")
        self.model_vram_asked = "vram_bytes" in m
        self.model_vram_bytes = m.get("vram_bytes")

    def tick(self) -> None:
        sub = self.subscription
        s = sub.latest if sub is not None else None
        if s is None or s.t == self._last_t:
            if sub is not None and sub.error:
                self.status.setText(f"Live use is not available. {sub.error}")
            return
        self._last_t = s.t
        self.ram_chart.append(s.t, s.ram_used_bytes, total=s.ram_total_bytes, model=self.model_rss_bytes,
                              with_model=self.model_loaded)  # fmt: skip
        if s.cpu_percent is not None:  # None in the sampler's first sample
            model_cpu = self.model_cpu.percent() if self.model_loaded else None
            self.cpu_chart.append(s.t, s.cpu_percent, model=model_cpu, with_model=self.model_loaded)
        first = next(iter(self.gpu_charts), None)
        for key, chart in self.gpu_charts.items():
            mem = s.gpu(*key)
            if mem is None or mem.used_bytes is None:
                chart.summary.setText(f"VRAM: {UNKNOWN} (its use cannot be read for this GPU)")
                continue
            # the model process reports one VRAM figure; llama.cpp fills the first GPU first
            shown = key == first and self.model_loaded and self.model_vram_asked
            chart.append(s.t, mem.used_bytes, total=mem.total_bytes, model=self.model_vram_bytes if shown else None,
                         with_model=shown)  # fmt: skip
        for chart in (self.ram_chart, self.cpu_chart, *self.gpu_charts.values()):
            chart.redraw(s.t)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:  # light ↔ dark: the charts follow
            for chart in (self.ram_chart, self.cpu_chart, *self.gpu_charts.values()):
                chart.restyle(self.palette())
        super().changeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        if self.subscription is None:
            self.subscription = shared_sampler().subscribe(interval_s=SAMPLE_INTERVAL_S)
        self.timer.start()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self.shutdown()
        super().hideEvent(event)

    def shutdown(self) -> None:
        self.timer.stop()
        sub, self.subscription = self.subscription, None
        if sub is not None:
            sub.close()

"""Light and dark: the View menu's switch changes the whole app's palette, the plots' backgrounds,
axes and series, and the navigation's icons; the choice is remembered; "Follow the system" follows
the system's colour scheme as Qt reports it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from pytestqt.qtbot import QtBot

from app.gui import theme
from app.gui.context import THEME_KEY, AppContext
from app.gui.main_window import MainWindow
from app.gui.workers import wait_for_workers

WAIT_MS = 30_000


@pytest.fixture(autouse=True)
def _back_to_the_system(qapp: object) -> Iterator[None]:
    yield
    theme.apply_theme("system")  # the QApplication outlives this test: leave it as other tests expect


def _window(qtbot: QtBot, settings: QSettings) -> MainWindow:
    win = MainWindow(AppContext(settings))
    qtbot.addWidget(win)
    win.show()
    return win


def _icon_ink(win: MainWindow, row: int) -> int:
    """The mean lightness of a nav icon's strokes (its opaque pixels)."""
    image = win.nav.item(row).icon().pixmap(24, 24).toImage()
    inks = [
        image.pixelColor(x, y).lightness()
        for x in range(image.width())
        for y in range(image.height())
        if image.pixelColor(x, y).alpha() > 200
    ]
    assert inks, "the icon draws nothing"
    return sum(inks) // len(inks)


def _window_colour() -> QColor:
    return QGuiApplication.palette().color(QPalette.ColorRole.Window)


def test_the_switch_changes_the_palette_plots_and_icons_and_is_remembered(
    qtbot: QtBot, tmp_path: Path
) -> None:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = _window(qtbot, settings)
    try:
        assert win.theme_actions["system"].isChecked()  # nothing chosen yet: follow the system
        win.show_panel("machine")
        win.show_panel("quantviz")
        machine, quantviz = win.panels["machine"], win.panels["quantviz"]
        plots = [machine.ram_chart.widget, machine.cpu_chart.widget, quantviz.plot]

        for choice, dark in (("dark", True), ("light", False), ("dark", True)):
            win.theme_actions[choice].trigger()  # what View → Dark / Light does
            assert (_window_colour().lightness() < 128) is dark, choice
            # widgets hear of an application palette through posted events
            qtbot.waitUntil(lambda d=dark: theme.is_dark(machine.palette()) is d, timeout=5_000)
            assert theme.is_dark(win.palette()) is dark and theme.is_dark(quantviz.palette()) is dark
            base = QGuiApplication.palette().color(QPalette.ColorRole.Base)
            text = QGuiApplication.palette().color(QPalette.ColorRole.Text)
            for plot in plots:
                assert plot.backgroundBrush().color() == base, (choice, plot.accessibleName())
                axis = plot.getPlotItem().getAxis("left")
                assert axis.textPen().color() == text  # tick labels readable on that background
            colors = theme.plot_colors()
            assert machine.ram_chart.line.opts["pen"].color() == colors.machine
            assert quantviz.curve_after.opts["pen"].color() == colors.after
            # every series keeps a readable contrast with the background it is drawn on
            for series in (colors.machine, colors.model, colors.before, colors.after):
                assert abs(series.lightness() - base.lightness()) > 60, (choice, series.name())
            ink = _icon_ink(win, 0)
            assert (ink > 128) is dark, (choice, ink)  # light strokes on dark, dark on light
        assert settings.value(THEME_KEY) == "dark"
    finally:
        win.close()
        wait_for_workers(WAIT_MS)

    theme.apply_theme("system")  # as a fresh start would be, before the window reads the setting
    assert _window_colour().lightness() > 128
    again = _window(qtbot, settings)
    try:
        assert again.theme_actions["dark"].isChecked() and theme.current_choice() == "dark"
        assert _window_colour().lightness() < 128  # remembered
    finally:
        again.close()
        wait_for_workers(WAIT_MS)


def test_following_the_system_follows_its_colour_scheme_and_a_choice_does_not(
    qtbot: QtBot, tmp_path: Path
) -> None:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = _window(qtbot, settings)
    try:
        win.theme_actions["system"].trigger()
        platform_light = _window_colour().lightness() > 128  # offscreen Qt's platform is light
        assert platform_light
        # what QStyleHints.colorSchemeChanged delivers when the desktop switches
        theme.follow_system(Qt.ColorScheme.Dark)
        assert _window_colour().lightness() < 128
        theme.follow_system(Qt.ColorScheme.Light)
        assert _window_colour().lightness() > 128
        win.theme_actions["light"].trigger()  # chosen: the desktop's scheme no longer matters
        theme.follow_system(Qt.ColorScheme.Dark)
        assert _window_colour().lightness() > 128
        assert settings.value(THEME_KEY) == "light"
    finally:
        win.close()
        wait_for_workers(WAIT_MS)


def test_an_unknown_saved_choice_means_follow_the_system(tmp_path: Path) -> None:
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue(THEME_KEY, "purple")
    assert AppContext(settings).theme == "system"

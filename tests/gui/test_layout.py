"""The window on a laptop screen: at 1366×768, in a half-screen tile (960×1000) and at 1024×700
every panel fits — with its real content (the Advisor built on SmolLM2 with a what-if GPU, the
catalog overview, long model names) — the window never asks for more than 900×650, nothing is
cut (the key buttons lie wholly inside the window, labels wrap instead of being clipped), side
panes fold instead of widening the window, and a saved size never outgrows the screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, QSettings
from PySide6.QtWidgets import QAbstractButton, QLabel, QScrollArea, QSplitter, QWidget

from app.core.machine.hardware import detect_machine
from app.gui.context import AppContext
from app.gui.main_window import PANELS, MainWindow
from app.gui.panels.advisor_source import request_for_spec
from app.gui.widgets.screen_fit import fit_rect
from app.gui.workers import wait_for_workers

WAIT_MS = 30_000
MAX_MIN_WIDTH, MAX_MIN_HEIGHT = 900, 650  # what a 960-px tile and a 768-px-high screen leave
SIZES = ((960, 1000), (1366, 768), (1024, 700))


@pytest.fixture(scope="module")
def profile():  # type: ignore[no-untyped-def]
    return detect_machine(measure_bandwidth=False)  # the panels' real profile, without the bandwidth run


@pytest.fixture
def window(qtbot, tmp_path: Path, profile):  # type: ignore[no-untyped-def]
    ctx = AppContext(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    ctx._profile = profile  # as if detection had finished
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()
    wait_for_workers(WAIT_MS)


def _settle(qtbot, win: MainWindow, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    win.resize(*size)
    qtbot.wait(50)  # let the layouts (and the chat's side panes) settle
    # a window whose content needs more than ``size`` grows past it: that is the failure
    assert (win.width(), win.height()) == size, (size, win.size(), win.minimumSizeHint())


def _in_window(win: QWidget, w: QWidget) -> QRect:
    return QRect(w.mapTo(win, QPoint(0, 0)), w.size())


def _scrolled_or_folded(w: QWidget) -> bool:
    """Inside a scroll area's content (it may lie below the fold by design) or a folded side pane."""
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QScrollArea) and p.widget() is not None and p.widget().isAncestorOf(w):
            return True
        parent = p.parentWidget()
        if isinstance(parent, QSplitter) and parent.sizes()[parent.indexOf(p)] == 0:
            return True
        p = parent
    return False


def _assert_nothing_cut(win: MainWindow, key: str) -> None:
    panel = win.panels[key]
    frame = QRect(QPoint(0, 0), win.size())
    hint = win.minimumSizeHint()
    assert hint.width() <= MAX_MIN_WIDTH and hint.height() <= MAX_MIN_HEIGHT, (key, hint)
    assert win.minimumWidth() <= MAX_MIN_WIDTH
    for w in panel.findChildren(QWidget):
        if not w.isVisible() or _scrolled_or_folded(w):
            continue
        if isinstance(w, QAbstractButton) and w.text():
            # a button wholly on screen and at least as wide as its text needs
            assert frame.contains(_in_window(win, w)), (key, w.text(), _in_window(win, w), frame)
            assert w.width() >= w.minimumSizeHint().width(), (key, w.text())
        elif isinstance(w, QLabel) and w.text() and w.wordWrap():
            # a wrapped label gets the height its lines need: nothing clipped at the bottom
            assert w.height() >= w.heightForWidth(w.width()) - 1, (key, w.text()[:60])
            assert frame.contains(_in_window(win, w)), (key, w.text()[:60])


def _scroll_fits_width(area: QScrollArea) -> bool:
    return area.horizontalScrollBar().maximum() == 0


def test_every_panel_fits_a_laptop_screen_with_its_real_content(  # type: ignore[no-untyped-def]
    window: MainWindow, qtbot, smollm2_path: Path
) -> None:
    advisor = window.panel("advisor")
    window.show_panel("advisor")
    qtbot.waitUntil(lambda: bool(advisor.overview.rows), timeout=WAIT_MS)  # the catalog overview
    for size in SIZES:
        _settle(qtbot, window, size)
        _assert_nothing_cut(window, "advisor")
        assert advisor.overview.download_button.isVisible()
    advisor.load(request_for_spec(str(smollm2_path)))
    qtbot.waitUntil(lambda: advisor.result is not None, timeout=WAIT_MS)
    first = advisor.result
    advisor.vram_spin.setFocus()
    advisor.vram_spin.selectAll()
    qtbot.keyClicks(advisor.vram_spin, "8")  # the what-if GPU that once grew the window to 1531 px
    assert advisor.vram_spin.value() == 8.0
    qtbot.waitUntil(
        lambda: advisor.result is not first and bool(advisor.result.query.budget.gpus), timeout=WAIT_MS
    )
    assert "VRAM" in advisor.budget_label.text()
    for size in SIZES:
        _settle(qtbot, window, size)
        assert (window.width(), window.height()) == size  # the window did not grow
        _assert_nothing_cut(window, "advisor")
        page = advisor.advice_scroll
        assert _scroll_fits_width(page), size  # the plans page needs no sideways scrolling
        # the action at the bottom of the page is reachable: scrolled to, it lies inside the page
        page.ensureWidgetVisible(advisor.action_button)
        qtbot.wait(20)
        button = QRect(
            advisor.action_button.mapTo(page.viewport(), QPoint(0, 0)), advisor.action_button.size()
        )
        assert page.viewport().rect().contains(button), size
    for key, _, _ in PANELS:
        window.show_panel(key)
        qtbot.waitUntil(
            lambda key=key: window.stack.currentWidget() is window.panels.get(key), timeout=10_000
        )
        for size in SIZES:
            _settle(qtbot, window, size)
            _assert_nothing_cut(window, key)
        # only the panel on screen sets the window's minimum, not the widest one ever built
        assert window.stack.minimumSizeHint().width() <= window.panels[key].minimumSizeHint().width()


def test_the_chat_folds_its_side_panes_instead_of_widening_the_window(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    chat = window.panel("chat")
    window.show_panel("chat")
    split = chat.conversations.parentWidget()
    assert isinstance(split, QSplitter)
    _settle(qtbot, window, (1366, 768))
    assert all(s > 0 for s in split.sizes())  # conversations, chat and settings side by side
    _settle(qtbot, window, (960, 1000))
    sizes = split.sizes()
    assert sizes[2] == 0 and sizes[0] > 0 and sizes[1] > 0  # the settings folded first
    _settle(qtbot, window, (window.minimumSizeHint().width(), 700))
    assert split.sizes()[0] == 0 and split.sizes()[1] > 0  # then the conversations
    for button in (chat.send_button, chat.model_bar.load_button):
        assert QRect(QPoint(0, 0), window.size()).contains(_in_window(window, button))
    _settle(qtbot, window, (1366, 768))
    assert all(s > 0 for s in split.sizes())  # wide again: both come back


def test_long_model_names_do_not_widen_the_window(  # type: ignore[no-untyped-def]
    window: MainWindow, qtbot, smollm2_path: Path, tmp_path: Path
) -> None:
    long_name = "Very_Long_Organisation_Name_" * 4 + "SmolLM2_135M_Instruct_finetuned_merged_Q4_1.gguf"
    link = tmp_path / long_name
    link.symlink_to(smollm2_path)
    advisor = window.panel("advisor")
    window.show_panel("advisor")
    advisor.load(request_for_spec(str(link)))
    qtbot.waitUntil(lambda: advisor.result is not None, timeout=WAIT_MS)
    _settle(qtbot, window, (960, 1000))
    _assert_nothing_cut(window, "advisor")
    assert _scroll_fits_width(advisor.advice_scroll)
    chat = window.panel("chat")
    chat.model_bar.set_model(str(link))
    window.show_panel("chat")
    _settle(qtbot, window, (960, 1000))
    assert chat.model_bar.model_label.text() == long_name  # the whole name, shortened only on screen
    assert chat.model_bar.model_label.toolTip() == str(link)
    _assert_nothing_cut(window, "chat")


def test_a_saved_size_never_outgrows_the_screen(qtbot, tmp_path: Path, profile) -> None:  # type: ignore[no-untyped-def]
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    ctx = AppContext(settings)
    ctx._profile = profile
    first = MainWindow(ctx)  # nothing saved yet: the default size, fitted to this (800×800) screen
    qtbot.addWidget(first)
    first.show()
    screen = first.screen().availableGeometry()
    assert screen.contains(first.frameGeometry()), (first.frameGeometry(), screen)
    first.setGeometry(screen.x() + 300, screen.y() + 200, screen.width() + 600, screen.height() + 400)
    first.close()  # saves the oversized geometry, as a window from a bigger monitor would
    again = MainWindow(ctx)
    qtbot.addWidget(again)
    assert screen.contains(again.frameGeometry()), (again.frameGeometry(), screen)
    again.close()
    wait_for_workers(WAIT_MS)


def test_fit_rect_shrinks_and_moves_into_the_available_area() -> None:
    available = QRect(0, 30, 1366, 738)  # a 1366×768 screen under a 30-px top bar
    assert fit_rect(QRect(100, 100, 800, 600), available) == QRect(100, 100, 800, 600)  # fits: untouched
    assert fit_rect(QRect(400, 300, 1920, 1080), available) == QRect(0, 30, 1366, 738)
    assert fit_rect(QRect(1200, 700, 800, 600), available) == QRect(566, 168, 800, 600)  # moved back on
    assert fit_rect(QRect(-500, -40, 900, 500), available) == QRect(0, 30, 900, 500)

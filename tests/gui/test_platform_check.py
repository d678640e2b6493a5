"""The start check (app/gui/platform_check.py) on real files: small shared objects built with gcc
whose DT_NEEDED names a library that does not exist, the real Qt plugins inside PySide6 (checked
against ldd's verdict), and ``python -m app`` started without a display."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.gui.platform_check import (
    DEBIAN_PACKAGES,
    NoWindowError,
    check_platform,
    missing_libraries,
    qt_platform_order,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="Qt's X11/Wayland plugins: Linux"
)
ABSENT = "libtailorlm-absent.so.1"
QT_PLUGINS = Path(__import__("PySide6").__file__).parent / "Qt" / "plugins" / "platforms"


def _gcc(*args: str | Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build a small shared object")
    subprocess.run(["gcc", "-shared", "-fPIC", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def plugin_needing_an_absent_library(tmp_path: Path) -> Path:
    """``platforms/libqxcb.so`` → ``lib/libinner.so.1`` (found through the plugin's RUNPATH, as Qt's
    own libraries are) → ``libtailorlm-absent.so.1``, which was deleted after linking."""
    source = tmp_path / "empty.c"
    source.write_text("int tailorlm_test_symbol(void) { return 0; }\n")
    gone, lib, platforms = tmp_path / "gone", tmp_path / "lib", tmp_path / "platforms"
    for d in (gone, lib, platforms):
        d.mkdir()
    _gcc("-o", gone / ABSENT, f"-Wl,-soname,{ABSENT}", source)
    _gcc("-o", lib / "libinner.so.1", "-Wl,-soname,libinner.so.1", source,
         "-Wl,--no-as-needed", f"-L{gone}", f"-l:{ABSENT}")  # fmt: skip
    _gcc("-o", platforms / "libqxcb.so", source, "-Wl,--no-as-needed", f"-L{lib}", "-l:libinner.so.1",
         "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib")  # fmt: skip
    shutil.rmtree(gone)
    return platforms


def _ldd_missing(plugin: Path) -> set[str]:
    """The independent verdict: glibc's loader in trace mode (ldd) on the same file."""
    if shutil.which("ldd") is None:
        pytest.skip("needs ldd for the reference verdict")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if "=> not found" in line}


def test_qt_platform_order_follows_qt() -> None:
    assert qt_platform_order({}) == ["xcb"]
    assert qt_platform_order({"DISPLAY": ":0"}) == ["xcb"]
    assert qt_platform_order({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert qt_platform_order({"XDG_SESSION_TYPE": "wayland"}) == ["wayland", "xcb"]
    assert qt_platform_order({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":0"}) == ["wayland", "xcb"]


def test_a_missing_library_is_named_even_behind_the_plugins_own_libraries(
    plugin_needing_an_absent_library: Path,
) -> None:
    assert missing_libraries(plugin_needing_an_absent_library / "libqxcb.so") == (ABSENT,)
    with pytest.raises(NoWindowError) as caught:
        check_platform({"DISPLAY": ":0"}, plugin_dirs=[plugin_needing_an_absent_library])
    err = caught.value
    assert err.missing == (ABSENT,) and err.packages == ()
    assert "X11 (xcb) platform plugin needs libtailorlm-absent.so.1" in str(err)
    assert "apt-file search" in err.user_message() and "tailorlm --help" in err.user_message()


def test_the_same_plugin_is_not_judged_when_another_platform_is_forced(
    plugin_needing_an_absent_library: Path,
) -> None:
    check_platform(
        {"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, plugin_dirs=[plugin_needing_an_absent_library]
    )


def test_a_plugin_whose_libraries_all_load_passes(tmp_path: Path) -> None:
    (tmp_path / "empty.c").write_text("int tailorlm_test_symbol(void) { return 0; }\n")
    _gcc("-o", tmp_path / "libqxcb.so", tmp_path / "empty.c")
    assert missing_libraries(tmp_path / "libqxcb.so") == ()
    check_platform({"DISPLAY": ":0"}, plugin_dirs=[tmp_path])


@pytest.mark.parametrize("platform", ["xcb", "wayland"])
def test_the_real_qt_plugin_agrees_with_ldd(platform: str, tmp_path: Path) -> None:
    plugin = QT_PLUGINS / ("libqxcb.so" if platform == "xcb" else "libqwayland.so")
    if not plugin.is_file():
        pytest.skip(f"this PySide6 has no {plugin.name}")
    expected = _ldd_missing(plugin)
    if platform == "xcb":
        env = {"DISPLAY": ":99"}
    else:  # a listening socket where a compositor's would be, and no X11 to fall back to
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "wayland-7"))
        env = {"WAYLAND_DISPLAY": "wayland-7", "XDG_RUNTIME_DIR": str(tmp_path)}
    assert set(missing_libraries(plugin)) == expected
    if not expected:
        check_platform(env)  # everything loads: the window is Qt's to open
        return
    with pytest.raises(NoWindowError) as caught:
        check_platform(env)
    packages = {DEBIAN_PACKAGES[name] for name in expected}  # every library Qt needs has its package
    assert set(caught.value.packages) == packages
    assert f"sudo apt install {' '.join(sorted(packages))}" in caught.value.user_message()


def _app_env(**extra: str) -> dict[str, str]:
    hidden = ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "WAYLAND_SOCKET", "XDG_SESSION_TYPE")
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **extra}


def test_the_app_without_a_display_says_so_and_exits() -> None:
    done = subprocess.run([sys.executable, "-m", "app"], env=_app_env(), capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("TailorLM: The window cannot open: there is no display")
    assert "(DISPLAY is not set)" in done.stderr
    assert "Run `tailorlm`" in done.stderr and "Traceback" not in done.stderr and not done.stdout


def test_the_app_on_a_display_without_the_xcb_libraries_names_the_packages() -> None:
    expected = _ldd_missing(QT_PLUGINS / "libqxcb.so")
    if not expected:
        pytest.skip("this machine has every library Qt's xcb plugin needs")
    done = subprocess.run([sys.executable, "-m", "app"], env=_app_env(DISPLAY=":99"), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "could not load the Qt platform plugin" not in done.stderr.lower()  # Qt never got that far
    packages = sorted(DEBIAN_PACKAGES[name] for name in expected)
    assert f"sudo apt install {' '.join(packages)}" in done.stderr

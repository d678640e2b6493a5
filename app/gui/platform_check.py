"""Before the first window: can Qt open one here? Says what is missing in words.

On Linux Qt picks a platform plugin (X11's ``xcb`` or ``wayland``) and aborts with "could not load
the Qt platform plugin" when none can start — no display, or a plugin whose system libraries are
not installed (``libxcb-cursor0`` and friends on a bare Debian). This module predicts that from the
environment and the plugin files, without creating a QApplication: the platforms Qt will try, in
Qt's order; for each, whether it has a display and which of its plugin's libraries the system
cannot load. Only when every platform Qt would try is sure to fail does it raise
``NoWindowError``; anything it cannot judge (another platform, a plugin it cannot find or read)
is left to Qt. ``python -m app.gui.platform_check`` prints the verdict.

How: the plugin's ELF ``DT_NEEDED`` names are read (``app/gui/elf_needed.py``); a name found in
the file's own RUNPATH (Qt's libraries inside PySide6) is followed into that file, any other is
handed to the dynamic linker (``ctypes.CDLL``: the same search Qt's load will do, and it reports
the first missing file even several levels down). No tools needed; ~10-40 ms.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import TailorError
from app.gui.elf_needed import ElfReadError, read_dynamic

# Debian/Ubuntu package of each library Qt's X11 and Wayland plugins (and QtGui under them) load.
# Source: Qt docs, "Qt for X11 Requirements" (doc.qt.io/qt-6/linux-requirements.html), which lists
# the packages; each file checked against its package on Debian 12 (`dpkg -S`, `apt-cache show`).
DEBIAN_PACKAGES: Mapping[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libXext.so.6": "libxext6",
    "libXi.so.6": "libxi6",
    "libXrender.so.1": "libxrender1",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
# Libraries that come with PySide6 itself: missing means a damaged installation, not the system.
_OWN_LIBRARY = re.compile(r"^lib(Qt6|icu|pyside6|shiboken6)")
# glibc's dlopen message for a file it cannot find (dlerror(): "NAME: cannot open shared object file").
_NOT_FOUND = re.compile(r"^(?P<name>[^:\s]+): cannot open shared object file")
_PLUGIN_FILES = {"xcb": ("libqxcb.so",), "wayland": ("libqwayland.so", "libqwayland-generic.so")}
_PLATFORM_WORDS = {"xcb": "X11 (xcb)", "wayland": "Wayland"}


class NoWindowError(TailorError):
    """The desktop app cannot open a window here: no display, or Qt's platform plugin cannot load."""

    def __init__(
        self, message: str, *, hint: str, missing: tuple[str, ...] = (), packages: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.missing = missing  # library file names the system could not load
        self.packages = packages  # the Debian/Ubuntu packages that provide them


@dataclass(frozen=True)
class PlatformVerdict:
    """What one platform Qt would try needs and lacks."""

    name: str  # "xcb" or "wayland"
    display: str | None  # why it has no display, or None when it has one
    missing: tuple[str, ...]  # libraries its plugin needs that cannot be loaded


def check_platform(environ: Mapping[str, str] | None = None, *, plugin_dirs: Iterable[Path] = ()) -> None:
    """Raise ``NoWindowError`` when Qt is sure to fail to open a window; return otherwise.

    ``plugin_dirs``: where to look for the platform plugins before PySide6's own folder."""
    if not sys.platform.startswith("linux"):
        return  # macOS and Windows always have their one platform plugin
    env = os.environ if environ is None else environ
    dirs = [*plugin_dirs, *_plugin_dirs(env)]
    verdicts: list[PlatformVerdict] = []
    for name in qt_platform_order(env):
        base = name.split(":", 1)[0]
        kind = "wayland" if base.startswith("wayland") else base
        plugin = _find_plugin(kind, dirs)
        if plugin is None:
            return  # a platform we cannot judge (offscreen, vnc, …) or cannot find: Qt decides
        display = _no_display(kind, env)
        verdict = PlatformVerdict(kind, display, missing_libraries(plugin) if display is None else ())
        if verdict.display is None and not verdict.missing:
            return  # this one will start
        verdicts.append(verdict)
    if verdicts:
        raise _explain(verdicts)


def qt_platform_order(environ: Mapping[str, str]) -> list[str]:
    """The platform plugins Qt tries, in order (Qt 6.8+, QGuiApplicationPrivate::
    createPlatformIntegration in qguiapplication.cpp): QT_QPA_PLATFORM when set, else Wayland first
    when WAYLAND_DISPLAY or XDG_SESSION_TYPE=wayland says so, then xcb (Qt's default on Linux)."""
    forced = environ.get("QT_QPA_PLATFORM", "")
    if forced:
        return [p for p in forced.split(";") if p]
    order = []
    if environ.get("WAYLAND_DISPLAY") is not None or environ.get("XDG_SESSION_TYPE") == "wayland":
        order.append("wayland")
    order.append("xcb")
    return order


def missing_libraries(plugin: Path) -> tuple[str, ...]:
    """The shared libraries ``plugin`` needs, directly or through its own libraries, that the system
    cannot load: the names the dynamic linker reports missing. Empty when everything loads."""
    missing: set[str] = set()
    seen: set[str] = set()
    queue = [plugin]
    while queue:
        path = queue.pop()
        try:
            needed, search = read_dynamic(path)
        except (OSError, ElfReadError):
            continue  # not ours to judge: Qt will say what it makes of the file
        for name in needed:
            if name in seen:
                continue
            seen.add(name)
            inside = next((d / name for d in search if (d / name).is_file()), None)
            if inside is not None:
                queue.append(inside)  # Qt's own libraries beside the plugin: follow them
                continue
            try:
                ctypes.CDLL(name)  # the system's: let its dynamic linker find it and what it needs
            except OSError as err:
                found = _NOT_FOUND.match(str(err))
                missing.add(found["name"] if found else name)
    return tuple(sorted(missing))


def _plugin_dirs(environ: Mapping[str, str]) -> list[Path]:
    dirs = (
        [Path(environ["QT_QPA_PLATFORM_PLUGIN_PATH"])] if environ.get("QT_QPA_PLATFORM_PLUGIN_PATH") else []
    )
    spec = importlib.util.find_spec("PySide6")  # without importing it (and Qt) yet
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "Qt" / "plugins" / "platforms")
    return dirs


def _find_plugin(kind: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for file_name in _PLUGIN_FILES.get(kind, ()):
            if (folder / file_name).is_file():
                return folder / file_name
    return None


def _no_display(kind: str, environ: Mapping[str, str]) -> str | None:
    """Why ``kind`` has no display to talk to, or None when it has one (as far as we can tell)."""
    if kind == "xcb":
        return None if environ.get("DISPLAY") else "DISPLAY is not set"
    # libwayland-client's rule: WAYLAND_SOCKET (an inherited fd), else WAYLAND_DISPLAY or
    # "wayland-0", absolute or inside XDG_RUNTIME_DIR.
    if environ.get("WAYLAND_SOCKET"):
        return None
    socket_name = environ.get("WAYLAND_DISPLAY") or "wayland-0"
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if not Path(socket_name).is_absolute() and not runtime:
        return "XDG_RUNTIME_DIR is not set"
    socket = Path(runtime) / socket_name
    return None if socket.exists() else f"no Wayland compositor at {socket}"


def _explain(verdicts: list[PlatformVerdict]) -> NoWindowError:
    broken = [v for v in verdicts if v.display is None]  # had a display, lacks libraries
    if not broken:
        reasons = "; ".join(v.display for v in verdicts if v.display)
        return NoWindowError(
            f"The window cannot open: there is no display to show it on ({reasons}).",
            hint="Run `tailorlm` (the command line: `tailorlm --help`) instead, or set DISPLAY "
            "(e.g. DISPLAY=:0 for this computer's screen, or log in with ssh -X), or set "
            "QT_QPA_PLATFORM=offscreen to start without a screen.",
        )
    missing = tuple(sorted({lib for v in broken for lib in v.missing}))
    packages = tuple(sorted({DEBIAN_PACKAGES[lib] for lib in missing if lib in DEBIAN_PACKAGES}))
    own = [lib for lib in missing if _OWN_LIBRARY.match(lib)]
    unknown = [lib for lib in missing if lib not in DEBIAN_PACKAGES and lib not in own]
    plugins = " and ".join(_PLATFORM_WORDS[v.name] for v in broken)
    plugins += " platform plugins need" if len(broken) > 1 else " platform plugin needs"
    steps = []
    if packages:
        steps.append(f"On Debian or Ubuntu: sudo apt install {' '.join(packages)}")
    if unknown:
        steps.append(f"{', '.join(unknown)}: `apt-file search NAME` names the package that has it")
    if own:
        steps.append("Qt's own files are missing: reinstall TailorLM")
    steps.append("The command line works without them: `tailorlm --help`")
    return NoWindowError(
        f"The window cannot open: Qt's {plugins} {_join(missing)}, which this system cannot load.",
        hint=". ".join(steps) + ".",
        missing=missing,
        packages=packages,
    )


def _join(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


if __name__ == "__main__":  # `python -m app.gui.platform_check`: the verdict, for bug reports
    try:
        check_platform()
    except NoWindowError as err:
        sys.stderr.write(f"{err.user_message()}\n")
        sys.exit(2)
    sys.stdout.write("A window can open here (or Qt will decide: a platform this check does not judge).\n")

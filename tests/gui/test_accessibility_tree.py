"""The window as a screen reader meets it: the real app (``python -m app``) on a virtual X screen,
its accessibility tree read over AT-SPI by ``tests/gui/a11y_dump.py`` — another process, the
system Python with pyatspi, on a private D-Bus session with its own accessibility bus — which
selects every panel and tab, presses a button, asks SmolLM2 a question and listens to what is
announced, using only AT-SPI interfaces, as Orca would.

Needs Xvfb, dbus-daemon, dbus-send, at-spi2-core and Debian's python3-pyatspi (``.ci/run``
installs them). Without them the test skips and says what is missing; with
``TAILORLM_REQUIRE_A11Y=1`` (set by ``.ci/run`` once the install worked) it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.models import smollm2_path

ROOT = Path(__file__).resolve().parents[2]
DUMPER = Path(__file__).with_name("a11y_dump.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # pyatspi is a Debian package (python3-pyatspi), not on PyPI
REQUIRE_ENV = "TAILORLM_REQUIRE_A11Y"
PACKAGES = "xvfb dbus at-spi2-core python3-pyatspi"
SCREEN = "1366x768x24"
PANELS = (
    "Machine",
    "Advisor",
    "What quantization does",
    "Quality ladder",
    "Library & downloads",
    "Convert",
    "Chat",
    "Server",
)
# What a screen reader reads out as a control: each needs a name. (A combo box's name on Linux is
# its value — Qt's choice — so its name is the label it is labelled by.)
CONTROL_ROLES = frozenset({
    "push button", "toggle button", "check box", "radio button", "combo box", "text", "entry",
    "password text", "spin button", "slider", "list item", "page tab", "menu item",
    "check menu item", "radio menu item", "tree item", "link",
})  # fmt: skip
NO_ROLE = frozenset({"unknown", "invalid", "redundant object"})
# The dumper's steps: open the Advisor's plans for a catalog model; a short, repeatable answer.
PRESSES = ("Advisor/Size up the catalog model/Plans for the model",)
VALUES = ("Seed=7", "Maximum answer tokens=120")
PROMPT = "Give three facts about the sea, one short sentence each."
SESSION_TIMEOUT_S = 600


def _libexec(name: str) -> str | None:
    for folder in ("/usr/libexec", "/usr/lib/at-spi2-core", "/usr/lib/x86_64-linux-gnu/at-spi2-core"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return None


def _missing() -> list[str]:
    missing = [tool for tool in ("Xvfb", "dbus-daemon", "dbus-send") if shutil.which(tool) is None]
    missing += [name for name in ("at-spi-bus-launcher", "at-spi2-registryd") if _libexec(name) is None]
    if (
        not os.access(SYSTEM_PYTHON, os.X_OK)
        or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import pyatspi"], capture_output=True, timeout=60, check=False
        ).returncode
    ):
        missing.append("pyatspi for the system Python")
    return missing


def _unavailable(why: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{why} ({REQUIRE_ENV}=1: the accessibility test must run)")
    pytest.skip(why)


def _end(proc: subprocess.Popen[Any]) -> None:
    """End a process this test started, and the processes it started (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _start(cmd: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen(cmd, env=env, start_new_session=True, **kwargs)


@pytest.fixture(scope="module")
def report(_machine_probe: bytes | None) -> Iterator[dict[str, Any]]:
    """Start Xvfb, a D-Bus session with the accessibility bus, the app with SmolLM2 remembered
    as the chat's last model, and the dumper; what the dumper saw."""
    missing = _missing()
    if missing:
        _unavailable(f"needs {', '.join(missing)} (Debian: apt-get install {PACKAGES})")
    base = Path(tempfile.mkdtemp(prefix="tailorlm-a11y-"))
    runtime = base / "runtime"  # the accessibility bus's socket, apart from any other session's
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "QT_", "XDG_", "DISPLAY"))}
    env.update(HOME=str(base / "home"), XDG_CONFIG_HOME=str(base / "config"), XDG_DATA_HOME=str(base / "data"),
               XDG_CACHE_HOME=str(base / "cache"), XDG_RUNTIME_DIR=str(runtime), TAILORLM_HOME=str(base / "tl"),
               HF_HUB_CACHE=str(base / "hub"), HF_HUB_OFFLINE="1")  # fmt: skip
    if _machine_probe is not None:  # the machine probe's cache, as every test's home has it
        (base / "tl" / "cache").mkdir(parents=True)
        (base / "tl" / "cache" / "machine_probe.json").write_bytes(_machine_probe)
    started: list[subprocess.Popen[Any]] = []
    app_log = base / "app.log"
    try:
        xvfb = _start(["Xvfb", "-displayfd", "1", "-screen", "0", SCREEN, "-nolisten", "tcp"], env,
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        started.append(xvfb)
        assert xvfb.stdout is not None
        display = xvfb.stdout.readline().strip()
        if not display.isdigit():
            _unavailable("Xvfb did not start")
        env["DISPLAY"] = f":{display}"
        bus = _start(["dbus-daemon", "--session", "--nofork", "--print-address=1"], env,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        started.append(bus)
        assert bus.stdout is not None
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        # the accessibility bus (at-spi-bus-launcher, D-Bus activated) is up before the app asks
        a11y_bus = subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=org.a11y.Bus", "/org/a11y/bus",
                                   "org.a11y.Bus.GetAddress"], env=env, capture_output=True, text=True, timeout=60,
                                  check=False)  # fmt: skip
        if a11y_bus.returncode:
            _unavailable(f"the accessibility bus did not start: {a11y_bus.stderr.strip()}")
        app_env = {**env, "QT_QPA_PLATFORM": "xcb", "QT_LINUX_ACCESSIBILITY_ALWAYS_ON": "1"}
        verdict = subprocess.run([sys.executable, "-m", "app.gui.platform_check"], env=app_env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        if verdict.returncode:
            _unavailable(f"Qt cannot open a window on Xvfb: {verdict.stderr.strip()}")
        _remember_smollm2(app_env)
        with app_log.open("w") as log:
            started.append(_start([sys.executable, "-m", "app"], app_env, cwd=ROOT, stdout=log, stderr=log))
        args = [SYSTEM_PYTHON, str(DUMPER), "--prompt", PROMPT, "--timeout-s", "300"]
        args += [a for p in PRESSES for a in ("--press", p)] + [a for v in VALUES for a in ("--value", v)]
        dumper = subprocess.run(args, env=env, capture_output=True, text=True, timeout=SESSION_TIMEOUT_S,
                                check=False)  # fmt: skip
        assert dumper.returncode == 0, (
            f"the dumper failed ({dumper.returncode}): {dumper.stderr[-3000:]}\n"
            f"app log: {app_log.read_text()[-3000:]}"
        )
        yield json.loads(dumper.stdout)
    finally:
        for proc in reversed(started):
            _end(proc)
        shutil.rmtree(base, ignore_errors=True)


def _remember_smollm2(env: dict[str, str]) -> None:
    """The chat's "model used last" (as the app saves it): the Chat panel loads it when it opens."""
    code = (
        "import sys; from PySide6.QtCore import QSettings; from app.core.chat.recent import to_json;"
        "from app.core.chat.model_ref import ModelRef;"
        "s = QSettings(sys.argv[1], QSettings.Format.IniFormat);"
        "s.setValue('chat/recent_models', to_json([ModelRef(sys.argv[2], 'SmolLM2 135M Instruct', 'Q4_1', 2048, 0)]));"
        "s.sync()"
    )
    conf = Path(env["XDG_CONFIG_HOME"]) / "TailorLM" / "TailorLM.conf"  # QSettings() of the app, on Linux
    subprocess.run([sys.executable, "-c", code, str(conf), str(smollm2_path())], cwd=ROOT, env=env, check=True,
                   timeout=60)  # fmt: skip


# --- reading the dump -----------------------------------------------------------------------------


def _label(node: dict[str, Any]) -> str:
    """The names of what labels ``node`` (AT-SPI's labelled-by: a Qt buddy label)."""
    return " ".join(
        t["name"] for r in node["relations"] if r["type"] == "labelled-by" for t in r["targets"]
    ).strip()


def _spoken_name(node: dict[str, Any]) -> str:
    if node["role"] == "combo box":
        return _label(node)
    return node["name"].strip() or _label(node)


def _on_screen(tree: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(path, node, parent role) of every node a user can reach: visible, or in the menu bar."""

    def walk(
        node: dict[str, Any], path: str, parent: str, in_menu: bool
    ) -> Iterator[tuple[str, dict[str, Any], str]]:
        in_menu = in_menu or node["role"] == "menu bar"
        here = f"{path} > {node['role']} {node['name'][:40]!r}"
        if "visible" in node["states"] or in_menu:
            yield here, node, parent
        for child in node["children"]:
            yield from walk(child, here, node["role"], in_menu)

    yield from walk(tree, "", "", False)


def _unnamed(dumps: dict[str, Any]) -> tuple[set[str], set[str], int]:
    """Controls without a name, keyboard-reachable objects without a name or role, and how many
    controls were checked."""
    no_name, no_role, checked = set(), set(), 0
    for key, tree in dumps.items():
        for path, node, parent in _on_screen(tree):
            role, focusable = node["role"], "focusable" in node["states"]
            if role in CONTROL_ROLES:
                checked += 1
                if not _spoken_name(node):
                    no_name.add(f"[{key}]{path}")
            elif focusable and role != "label" and parent != "combo box" and not _spoken_name(node):
                # (a label is named by its text; a combo box's popup list by the combo box)
                no_name.add(f"[{key}]{path}")
            if focusable and role in NO_ROLE:
                no_role.add(f"[{key}]{path}")
    return no_name, no_role, checked


def _words(text: str) -> str:
    return " ".join(text.split())


# --- the tests ----------------------------------------------------------------------------------


def test_every_panel_and_tab_is_reached_through_at_spi(report: dict[str, Any]) -> None:
    dumps = report["dumps"]
    assert report["toolkit"] == "Qt"
    for title in PANELS:
        page = dumps[title]
        assert page["name"] == title and "showing" in page["states"] and page["children"], title
    tabs = [k for k in dumps if k.endswith(" tab")]
    assert {
        "Advisor › Catalog tab",
        "Advisor › File or folder tab",
        "Library & downloads › Hugging Face Hub tab",
    } <= set(tabs)
    plans = dumps["Advisor › Size up the catalog model"]
    assert any(n["role"] == "table" and n["name"].startswith("Plans") for _, n, _ in _on_screen(plans))


def test_every_control_has_a_name_and_a_role(report: dict[str, Any]) -> None:
    no_name, no_role, checked = _unnamed(report["dumps"])
    assert checked >= 100, f"only {checked} controls were on screen: the walk missed the panels"
    assert not no_name, "controls a screen reader announces without a name:\n" + "\n".join(sorted(no_name))
    assert not no_role, "keyboard-reachable objects without a role:\n" + "\n".join(sorted(no_role))


def test_the_menus_and_answer_controls_are_named(report: dict[str, Any]) -> None:
    window = {n["name"] for _, n, _ in _on_screen(report["dumps"]["window"]) if n["role"] == "menu item"}
    assert {"Quit", "About TailorLM"} <= window
    after = [
        n["name"]
        for _, n, _ in _on_screen(report["dumps"]["Chat › after the answer"])
        if n["role"] == "push button"
    ]
    assert "Copy the answer" in after and "Edit this message and answer again from here" in after


def test_a_streamed_answer_is_announced_as_it_comes(report: dict[str, Any]) -> None:
    chat = report["chat"]
    assert chat["started"] and not chat["error"], chat["error"]
    assert chat["answer_name"].startswith("Answer from SmolLM2"), chat["answer_name"]
    said = [e for e in chat["events"] if e["type"] == "object:announcement"]
    assert said, "nothing was announced while the answer streamed"
    # polite (1): queued after what the screen reader is saying; from the answer itself
    assert {e["detail1"] for e in said} == {1}
    assert {e["source_name"] for e in said} == {chat["answer_name"]}
    # every word of the answer once, in order: what the answer's Text holds at the end
    assert _words(" ".join(e["text"] for e in said)) == _words(chat["answer_text"])
    assert len(said) >= 2, f"one announcement for a {len(chat['answer_text'])}-character answer: {said}"
    # sentence by sentence while it streams: the first is heard before the answer's text stops changing
    body = chat["answer_name"].removeprefix("Answer from ") + " message text"
    grew = [
        e["t_s"]
        for e in chat["events"]
        if e["type"].startswith("object:text-changed") and e["source_name"] == body
    ]
    assert grew, "the answer's text never changed on the bus"
    assert said[0]["t_s"] < max(grew), (said[0], max(grew))


def test_a_sentence_is_complete_at_its_stop_and_a_space_or_at_a_line_end() -> None:
    from app.gui.widgets.live_region import complete_sentences_end

    text = 'It is 3.5 m deep. "Really?" Yes!\nAnd the rest is bein'
    assert complete_sentences_end(text) == text.index("And")
    assert complete_sentences_end(text, text.index("And")) == text.index("And")  # nothing new complete
    assert complete_sentences_end("It is 3.5") == 0
    assert complete_sentences_end("Fish swim. 2. Whales sing") == len(
        "Fish swim. "
    )  # "2." goes with its item
    assert text[: complete_sentences_end(text[:28])] == 'It is 3.5 m deep. "Really?" '

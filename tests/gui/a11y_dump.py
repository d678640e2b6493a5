"""Read the running TailorLM window's accessibility tree over AT-SPI, as a screen reader does, and
print it as JSON. Run by the *system* Python (pyatspi is Debian's python3-pyatspi, not a PyPI
package), not the app's virtual environment; ``tests/gui/test_accessibility_tree.py`` starts it on
a private D-Bus session beside the app and checks what it prints.

    /usr/bin/python3 tests/gui/a11y_dump.py [--press PANEL/BUTTON/PAGE …] [--value NAME=NUMBER …]
                                            [--prompt TEXT] [--timeout-s 300]

1. waits until the application is on the accessibility bus;
2. selects each item of the "Panels" list through the list's AT-SPI Selection (what a screen
   reader's "select" does), waits until that panel is showing and its tree stops changing, and
   dumps it (role, name, description, states, relations, actions, children); then selects each
   tab of the panel's tab lists the same way and dumps the panel again; ``--press`` presses a
   button of a panel through its Action and dumps the panel once ``PAGE`` shows;
3. dumps the window around the panels (panel list, menus, banner, status bar);
4. sets spin buttons through Value (``--value``), e.g. the chat's answer length;
5. with ``--prompt``, on the Chat panel: types the prompt into the message box through
   EditableText, waits until Send can be pressed (a model is loaded), presses it through its
   Action, and records every ``object:announcement`` and ``object:text-changed`` event until the
   answer ends (Stop is disabled again); then reads the answer's text back through Text and dumps
   the Chat panel again.

Nothing here clicks with a mouse or types with a keyboard: only the AT-SPI interfaces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import gi

gi.require_version("Atspi", "2.0")
import pyatspi  # noqa: E402
from gi.repository import Atspi, GLib  # noqa: E402

MAX_CHILDREN = 60  # a table's cells beyond this are counted, not read (they are like the first)
SETTLE_S = 1.5  # a panel's tree is settled when its size has not changed for this long
PANEL_TIMEOUT_S = 60.0  # a panel builds in well under a second; slow machines get room


def _states(acc: Any) -> list[str]:
    return sorted(Atspi.StateType(s).value_nick for s in acc.get_state_set().get_states())


def _actions(acc: Any) -> list[str]:
    try:
        action = acc.queryAction()
    except NotImplementedError:
        return []
    return [action.getName(i) for i in range(action.nActions)]


def _relations(acc: Any) -> list[dict[str, Any]]:
    out = []
    for rel in acc.get_relation_set() or []:
        targets = [rel.get_target(i) for i in range(rel.get_n_targets())]
        out.append({"type": rel.get_relation_type().value_nick,
                    "targets": [{"role": t.getRoleName(), "name": t.name or ""} for t in targets if t is not None]})  # fmt: skip
    return out


def children(acc: Any) -> list[Any]:
    return [
        c for c in (acc.getChildAtIndex(i) for i in range(min(acc.childCount, MAX_CHILDREN))) if c is not None
    ]


def node(acc: Any, *, skip: Any = None) -> dict[str, Any]:
    """One accessible and everything under it (not under ``skip``)."""
    out: dict[str, Any] = {
        "role": acc.getRoleName(),
        "name": acc.name or "",
        "description": acc.description or "",
        "states": _states(acc),
        "relations": _relations(acc),
        "interfaces": sorted(acc.get_interfaces()),
        "actions": _actions(acc),
        "children": [],
    }
    if skip is not None and acc == skip:
        out["children_not_dumped"] = acc.childCount
        return out
    out["children"] = [node(c, skip=skip) for c in children(acc)]
    if acc.childCount > MAX_CHILDREN:
        out["children_not_dumped"] = acc.childCount - MAX_CHILDREN
    return out


def count(acc: Any) -> int:
    return 1 + sum(count(c) for c in children(acc))


def find_all(acc: Any, role: str, name: str | None = None) -> list[Any]:
    """Every accessible under ``acc`` (depth first) with ``role`` (and ``name``)."""
    found, stack = [], [acc]
    while stack:
        a = stack.pop()
        if a.getRoleName() == role and (name is None or a.name == name):
            found.append(a)
        stack.extend(reversed(children(a)))
    return found


def find(acc: Any, role: str, name: str | None = None) -> Any:
    found = find_all(acc, role, name)
    return found[0] if found else None


def has_state(acc: Any, state: Any) -> bool:
    return bool(acc.get_state_set().contains(state))


def wait_for(check: Any, timeout_s: float, what: str, step_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
        except GLib.Error:  # an object went away while we looked (a panel rebuilding)
            value = None
        if value:
            return value
        time.sleep(step_s)
    raise SystemExit(f"a11y_dump: timed out after {timeout_s:.0f} s waiting for {what}")


def application(name: str, timeout_s: float) -> Any:
    def found() -> Any:
        for app in pyatspi.Registry.getDesktop(0):
            if app is not None and app.name == name and app.childCount > 0:
                return app
        return None

    app = wait_for(found, timeout_s, f"the application {name!r} on the accessibility bus", 0.5)
    app.set_cache_mask(Atspi.Cache.NONE)  # read every property fresh: panels build while we watch
    return app


TIMINGS: dict[str, float] = {}  # seconds spent on each dump, settling included


def dump(dumps: dict[str, Any], key: str, acc: Any, since: float, **kwargs: Any) -> None:
    dumps[key] = node(acc, **kwargs)
    TIMINGS[key] = round(time.monotonic() - since, 2)


def settle(acc: Any) -> None:
    """Wait until the tree under ``acc`` stops changing (a page built, its first data shown)."""
    last, since = -1, time.monotonic()
    deadline = since + PANEL_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            size = count(acc)
        except GLib.Error:
            size = -1
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= SETTLE_S:
            return
        time.sleep(0.3)


def showing(acc: Any) -> bool:
    return acc is not None and has_state(acc, Atspi.StateType.SHOWING)


def visit_tabs(title: str, page: Any, dumps: dict[str, Any]) -> None:
    """Select every tab of the page's showing tab lists; dump the page with each."""
    for tabs in [t for t in find_all(page, "page tab list") if showing(t)]:
        selection = tabs.querySelection()
        for i, tab in enumerate(children(tabs)):
            if tab.getRoleName() != "page tab":  # the tab bar's scroll buttons
                continue
            if not selection.selectChild(i):
                raise SystemExit(f"a11y_dump: the tab list {tabs.name!r} refused to select {tab.name!r}")
            t0 = time.monotonic()
            wait_for(lambda tab=tab: has_state(tab, Atspi.StateType.SELECTED), 10, f"the tab {tab.name!r}")
            settle(page)
            dump(dumps, f"{title} › {tab.name} tab", page, t0)


def press(title: str, page: Any, button: str, then: str, dumps: dict[str, Any]) -> None:
    """Press ``button`` on the page through its Action; dump the page once ``then`` shows."""
    t0 = time.monotonic()
    target = wait_for(lambda: find(page, "push button", button), 10, f"the button {button!r} on {title!r}")
    target.queryAction().doAction(0)
    wait_for(lambda: any(showing(a) and a.childCount > 0 for a in find_all(page, "filler", then)),
             PANEL_TIMEOUT_S, f"{then!r} on {title!r} after pressing {button!r}")  # fmt: skip
    settle(page)
    dump(dumps, f"{title} › {button}", page, t0)


def visit_panels(window: Any, presses: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Select each panel through the Panels list's Selection and dump it while it shows."""
    panels = find(window, "list", "Panels")
    if panels is None:
        raise SystemExit("a11y_dump: the window has no list named 'Panels'")
    selection = panels.querySelection()
    stack = find(window, "layered pane")
    dumps: dict[str, Any] = {}
    for i, item in enumerate(children(panels)):
        title, t0 = item.name, time.monotonic()
        if not selection.selectChild(i):
            raise SystemExit(f"a11y_dump: the Panels list refused to select {title!r}")

        def page_shown(title: str = title) -> Any:
            pages = [p for p in find_all(stack, "filler", title) if showing(p) and p.childCount > 0]
            return pages[0] if pages else None

        page = wait_for(page_shown, PANEL_TIMEOUT_S, f"the {title!r} panel to show")
        settle(page)
        dump(dumps, title, page, t0)
        visit_tabs(title, page, dumps)
        for panel, button, then in presses:
            if panel == title:
                press(title, page, button, then, dumps)
    dump(dumps, "window", window, time.monotonic(), skip=stack)
    return dumps


def select_panel(window: Any, title: str) -> None:
    """Show the panel ``title`` again, as a screen reader selects it in the Panels list."""
    panels = find(window, "list", "Panels")
    titles = [item.name for item in children(panels)]
    if title not in titles or not panels.querySelection().selectChild(titles.index(title)):
        raise SystemExit(f"a11y_dump: the Panels list refused to select {title!r}")
    wait_for(lambda: any(showing(p) for p in find_all(window, "filler", title)), PANEL_TIMEOUT_S,
             f"the {title!r} panel to show")  # fmt: skip


def set_values(window: Any, values: list[tuple[str, float]]) -> dict[str, float]:
    """Set spin buttons through their Value interface; what they hold afterwards."""
    out = {}
    for name, number in values:
        spin = wait_for(lambda name=name: find(window, "spin button", name), 30, f"the spin button {name!r}")
        value = spin.queryValue()
        value.currentValue = number
        out[name] = value.currentValue
    return out


def ask(window: Any, prompt: str, timeout_s: float) -> dict[str, Any]:
    """Type ``prompt`` into the chat, press Send, and record what a screen reader hears."""
    box = wait_for(lambda: find(window, "text", "Message to the model"), 30, "the chat's message box")
    send = find(window, "push button", "Send the message")
    stop = find(window, "push button", "Stop the answer")
    box.queryEditableText().setTextContents(prompt)
    t0 = time.monotonic()
    wait_for(
        lambda: has_state(send, Atspi.StateType.ENABLED),
        timeout_s,
        "Send to be enabled (a model loaded)",
        0.5,
    )
    t0, load_s = time.monotonic(), time.monotonic() - t0

    heard: list[dict[str, Any]] = []

    def on_event(event: Any) -> None:
        src = event.source
        heard.append({
            "type": event.type,
            "detail1": event.detail1,  # an announcement's politeness: 1 polite, 2 assertive
            "text": event.any_data if isinstance(event.any_data, str) else "",
            "source_role": src.getRoleName() if src is not None else "",
            "source_name": (src.name or "") if src is not None else "",
            "t_s": round(time.monotonic() - t0, 3),
        })  # fmt: skip

    kinds = ("object:announcement", "object:text-changed")
    for kind in kinds:
        pyatspi.Registry.registerEventListener(on_event, kind)
    phase: dict[str, Any] = {"started": False, "ended_at": None, "error": ""}
    deadline = time.monotonic() + timeout_s

    def poll() -> bool:
        if has_state(stop, Atspi.StateType.ENABLED):
            phase["started"] = True
        elif phase["started"] and phase["ended_at"] is None:
            phase["ended_at"] = time.monotonic()
        late = time.monotonic() > deadline
        if late or (phase["ended_at"] is not None and time.monotonic() - phase["ended_at"] > 1.0):
            phase["error"] = "the answer did not end in time" if late else ""
            pyatspi.Registry.stop()  # the last announcements have had a second to arrive
            return False
        return True

    def press_send() -> bool:
        send.queryAction().doAction(0)
        return False

    GLib.timeout_add(100, press_send)
    GLib.timeout_add(200, poll)
    pyatspi.Registry.start(gil=False)  # no GIL-releasing idle: it slows event delivery to a crawl
    for kind in kinds:
        pyatspi.Registry.deregisterEventListener(on_event, kind)
    answers = [p for p in find_all(window, "panel") if (p.name or "").startswith("Answer")]
    answer = answers[-1] if answers else None
    texts = []  # the answer as a screen reader reads it: its text parts' Text, in order
    for part in find_all(answer, "label") if answer is not None else []:
        if (part.name or "").endswith("message text") and has_state(part, Atspi.StateType.VISIBLE):
            text = part.queryText()
            texts.append(text.getText(0, text.characterCount))
    return {
        "prompt": prompt,
        "load_s": round(load_s, 2),
        "started": phase["started"],
        "ended_s": round(phase["ended_at"] - t0, 3) if phase["ended_at"] is not None else None,
        "error": phase["error"],
        "events": heard,
        "answer_name": (answer.name or "") if answer is not None else None,
        "answer_text": "\n".join(texts),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", default="TailorLM")
    ap.add_argument("--press", action="append", default=[], metavar="PANEL/BUTTON/PAGE",
                    help="on PANEL, press BUTTON and dump the panel once PAGE shows")  # fmt: skip
    ap.add_argument("--value", action="append", default=[], metavar="NAME=NUMBER",
                    help="before asking, set the spin button NAME to NUMBER")  # fmt: skip
    ap.add_argument("--prompt", default="")
    ap.add_argument("--timeout-s", type=float, default=300.0)
    args = ap.parse_args()
    presses = [tuple(p.split("/", 2)) for p in args.press]
    app = application(args.app, args.timeout_s)
    window = wait_for(lambda: find(app, "frame"), 30, "the main window")
    t0 = time.monotonic()
    report: dict[str, Any] = {"application": app.name, "toolkit": app.get_toolkit_name(),
                              "toolkit_version": app.get_toolkit_version()}  # fmt: skip
    report["dumps"] = visit_panels(window, presses)  # type: ignore[arg-type]
    report["visit_s"] = round(time.monotonic() - t0, 1)
    report["dump_s"] = TIMINGS
    values = [(v.rsplit("=", 1)[0], float(v.rsplit("=", 1)[1])) for v in args.value]
    report["values"] = set_values(window, values)
    if args.prompt:
        select_panel(window, "Chat")  # the visit ended on the last panel, which need not be the chat
        report["chat"] = ask(window, args.prompt, args.timeout_s)
        chat = [p for p in find_all(window, "filler", "Chat") if showing(p)]
        if chat:  # the answer's own controls: Copy, Edit, versions
            dump(report["dumps"], "Chat › after the answer", chat[0], time.monotonic())
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

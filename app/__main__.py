"""``python -m app``: the desktop app. ``python -m app COMMAND …`` runs the command line instead."""

from __future__ import annotations

import sys


def main() -> int:
    from app.core.runtime import CHILD_FLAG

    if len(sys.argv) > 2 and sys.argv[1] == CHILD_FLAG:  # the packaged app starting its own child
        import runpy

        module = sys.argv[2]
        sys.argv = [module, *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return 0
    if len(sys.argv) > 1:  # `python -m app advise …`: the CLI, for scripts and the packaged app
        from app.cli import main as cli_main

        return cli_main(sys.argv[1:])
    # Before Qt: no display, or a platform plugin without its system libraries, is one message
    # in words (Qt itself would abort with "could not load the Qt platform plugin").
    from app.gui.platform_check import NoWindowError, check_platform

    try:
        check_platform()
    except NoWindowError as err:
        sys.stderr.write(f"TailorLM: {err.user_message()}\n")
        return 2
    from app.gui.app import main as gui_main

    return gui_main()


if __name__ == "__main__":
    sys.exit(main())

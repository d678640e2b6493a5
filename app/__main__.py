"""``python -m app``: the desktop app. Until the window lands, this prints the CLI's help."""

from __future__ import annotations

import sys


def main() -> int:
    from app.cli import main as cli_main

    # The GUI arrives with the desktop issue; the CLI already does everything the core can.
    return cli_main(sys.argv[1:] or ["--help"])


if __name__ == "__main__":
    sys.exit(main())

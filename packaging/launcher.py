"""Entry point of the packaged app: the GUI, the CLI (with arguments), or a child process."""

import sys

from app.__main__ import main

if __name__ == "__main__":
    sys.exit(main())

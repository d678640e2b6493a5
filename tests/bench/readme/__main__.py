"""``python -m tests.bench.readme [--write]``: which README blocks disagree with the results (exit 1),
or rewrite them."""

from __future__ import annotations

import argparse
import difflib
import sys

from tests.bench.readme import README, ReadmeBlockError, check, generate, write
from tests.bench.readme.markers import find_blocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the stale blocks of README.md")
    args = ap.parse_args()
    bodies = generate()
    try:
        if args.write:
            stale = write(README, bodies)
            print(f"rewrote {', '.join(stale)}" if stale else "README.md is up to date")
            return 0
        text = README.read_text(encoding="utf-8")
        stale = check(text, bodies)
    except ReadmeBlockError as e:
        print(f"README.md: {e}", file=sys.stderr)
        return 2
    blocks = find_blocks(text)
    for name in stale:
        sys.stdout.writelines(difflib.unified_diff(
            blocks[name].body.splitlines(keepends=True), bodies[name].splitlines(keepends=True),
            f"README.md ({name})", f"generated ({name})",
        ))  # fmt: skip
    if stale:
        print(f"\nstale: {', '.join(stale)} — run python -m tests.bench.readme --write", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

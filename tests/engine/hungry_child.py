"""A child that takes memory until something stops it: ``python -m tests.engine.hungry_child``.
It waits for one line on stdin first, so the test can put it in a memory cgroup before it eats."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.stdin.readline()
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))  # zero-filled: every page is touched

"""How a benchmark hands over its result: the JSON on stdout, and with ``--write`` the same text
in its committed results file (the README's numbers are generated from those files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit(report: dict[str, Any], out: Path, *, write: bool) -> int:
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    if write:
        out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0

"""The committed results the README is generated from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


class Results:
    """The two results folders; tests point them at copies to see a changed number change the README."""

    def __init__(self, bench_dir: Path = ROOT / "tests" / "bench" / "results",
                 gpu_dir: Path = ROOT / "tests" / "gpu" / "results") -> None:  # fmt: skip
        self.bench_dir, self.gpu_dir = bench_dir, gpu_dir
        self.files_read: set[Path] = set()  # every file a block was written from

    def bench(self, name: str) -> dict[str, Any]:
        return self._load(self.bench_dir / name)

    def gpu(self, name: str) -> dict[str, Any]:
        return self._load(self.gpu_dir / name)

    def _load(self, path: Path) -> dict[str, Any]:
        self.files_read.add(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a results file holds one JSON object")
        return data

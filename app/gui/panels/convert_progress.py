"""One bar for a whole conversion. ``build_gguf`` reports each stage's own fraction (convert 0→1,
quantize 0→1, check 0→1; and the importance matrix's, when one is made first), so a bar fed those
drops to 0 at every stage; this turns them into one fraction of the whole that only moves forward,
each stage weighted by its expected time."""

from __future__ import annotations

from collections.abc import Mapping

# as app.gui.panels.convert_run runs them: build_gguf's stages, a matrix made before quantizing
STAGE_ORDER = ("convert", "imatrix", "quantize", "check")
STAGE_NAMES = {
    "convert": "Converting with llama.cpp's converter",
    "imatrix": "Making the importance matrix",
    "quantize": "Quantizing",
    "check": "Checking that it loads and writes",
}


class OverallProgress:
    """``seconds``: each stage's expected time; a stage that will not run is left out (or 0)."""

    def __init__(self, seconds: Mapping[str, float]) -> None:
        self.stages = tuple(s for s in STAGE_ORDER if seconds.get(s, 0.0) > 0)
        total = sum(seconds[s] for s in self.stages) or 1.0
        self.weights = {s: seconds[s] / total for s in self.stages}
        self.starts: dict[str, float] = {}
        start = 0.0
        for s in self.stages:
            self.starts[s] = start
            start += self.weights[s]
        self.fraction = 0.0  # of the whole; never goes back

    def update(self, stage: str, stage_fraction: float) -> float:
        """The whole's fraction after ``stage`` reached ``stage_fraction``; a stage not planned
        (or reported out of order) never moves the bar back."""
        if stage in self.weights:
            f = min(1.0, max(0.0, stage_fraction))
            self.fraction = max(self.fraction, min(1.0, self.starts[stage] + self.weights[stage] * f))
        return self.fraction

    def text(self, stage: str, stage_fraction: float, detail: str = "") -> str:
        """ "Step 2 of 3 — Quantizing: 40 % (blk.3.attn_q.weight); 63 % in all"."""
        name = STAGE_NAMES.get(stage, stage)
        step = f"Step {self.stages.index(stage) + 1} of {len(self.stages)} — " if stage in self.stages else ""
        more = f" ({detail})" if detail else ""
        return f"{step}{name}: {100 * stage_fraction:.0f} %{more}; {100 * self.fraction:.0f} % in all"

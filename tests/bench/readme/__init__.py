"""The README's benchmark numbers, generated from the committed results (issue 15).

Every block of README.md between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` is written by
the generator NAME below from ``tests/bench/results/*.json`` or ``tests/gpu/results/*.json``;
nothing between the markers is edited by hand. ``python -m tests.bench.readme`` names the stale
blocks, ``--write`` rewrites them, and ``tests/test_readme_numbers.py`` fails while any is stale.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.bench.readme import calibration, gpu, imatrix, local, moe, pooling, ram_cgroup, server, speed_model
from tests.bench.readme.markers import ReadmeBlockError, find_blocks, replace_blocks
from tests.bench.readme.results import ROOT, Results

README = ROOT / "README.md"

GENERATORS: dict[str, Callable[[Results], str]] = {
    "estimate_accuracy": local.estimate_accuracy,
    "estimate_accuracy_modern": moe.estimate_accuracy_modern,
    "ram_cgroup": ram_cgroup.ram_cgroup,
    "engine_speed": local.engine_speed,
    "sampler_speed": local.sampler_speed,
    "abort_callback": local.abort_callback,
    "stop_latency": local.stop_latency,
    "gui_responsiveness": local.gui_responsiveness,
    "convert_speed": local.convert_speed,
    "h100_table": gpu.h100_table,
    "h100_summary": gpu.h100_summary,
    "h200_probe": gpu.h200_probe,
    "h200_speed": gpu.h200_speed,
    "h200_moe": moe.h200_moe,
    "imatrix_quality": imatrix.imatrix_quality,
    "imatrix_speed": imatrix.imatrix_speed,
    "h200_imatrix": imatrix.h200_imatrix,
    "server_speed": server.server_speed,
    "speed_model": speed_model.speed_model,
    "speed_calibration": calibration.speed_calibration,
    "h200_bench": calibration.h200_bench,
    "download_speed": local.download_speed,
    "gguf_header_speed": local.gguf_header_speed,
    "gguf_fuzz": local.gguf_fuzz,
    "pooling": pooling.pooling,
    "h200_rpc": pooling.h200_rpc,
}


WIDTH = 100  # the README's prose is wrapped at about this width; tables are not


def _wrap(text: str) -> str:
    paragraphs = text.strip("\n").split("\n\n")
    return (
        "\n\n".join(
            p
            if p.startswith("|")
            else textwrap.fill(p, WIDTH, break_long_words=False, break_on_hyphens=False)
            for p in paragraphs
        )
        + "\n"
    )


def generate(results: Results | None = None) -> dict[str, str]:
    """Every block's text as the results say now."""
    results = results or Results()
    return {name: _wrap(gen(results)) for name, gen in GENERATORS.items()}


def check(readme_text: str, bodies: dict[str, str]) -> list[str]:
    """The names of the blocks whose text differs from ``bodies``; a block the README lacks, or one
    no generator writes, is an error."""
    blocks = find_blocks(readme_text)
    unknown = sorted(set(blocks) - set(bodies))
    missing = sorted(set(bodies) - set(blocks))
    if unknown or missing:
        raise ReadmeBlockError(
            "; ".join(x for x in (unknown and f"no generator for {', '.join(unknown)}",
                                  missing and f"no block in the README for {', '.join(missing)}") if x)
        )  # fmt: skip
    return [name for name, b in blocks.items() if b.body != bodies[name]]


def write(readme: Path, bodies: dict[str, str]) -> list[str]:
    """Rewrite the stale blocks of ``readme`` in place; returns their names."""
    text = readme.read_text(encoding="utf-8")
    stale = check(text, bodies)
    if stale:
        readme.write_text(replace_blocks(text, {n: bodies[n] for n in stale}), encoding="utf-8")
    return stale


__all__ = ["GENERATORS", "README", "ReadmeBlockError", "Results", "check", "generate", "write"]

"""Issue 17's blocks: what an importance matrix buys (``imatrix_quality.json``), TailorLM's matrix and
quantizer beside llama.cpp's tools on this CPU (``imatrix_speed.json``) and on the H200
(``tests/gpu/results/h200-imatrix.json``)."""

from __future__ import annotations

from typing import Any

from tests.bench.readme.fmt import machine_words, spread, table
from tests.bench.readme.results import Results


def _kld(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def imatrix_quality(r: Results) -> str:
    j = r.bench("imatrix_quality.json")
    rows = []
    for m in j["models"]:
        for q in j["types"]:
            k = m["kld"][q]
            gain = m["reduction"].get(q)
            rows.append([f"{m['model']} ({m['source_type']})", q, _kld(k["plain"]), _kld(k["imatrix"]),
                         "—" if gain is None else f"{100 * gain:.0f} %"])  # fmt: skip
    im = ", ".join(f"{m['model']}: {m['imatrix']['chunks']} chunks of 512 ({m['imatrix']['tokens']:,} tokens)"
                   for m in j["models"])  # fmt: skip
    return "\n".join([
        table(["model (source)", "type", "mean KLD, plain", "with the matrix", "divergence removed"], rows),
        "",
        f"Matrices from the built-in calibration text ({im}); scored on the quality check's own text against "
        f"the source file. {machine_words(j['machine'])}, {j['threads']} threads, llama-cpp-python "
        f"{j['llama_cpp_python']}; `tests/bench/results/imatrix_quality.json`.",
    ])  # fmt: skip


def _ratio(s: dict[str, Any]) -> str:
    return f"{s['median']:.2f}× ({spread(s['values'])})"


def _busy_note(j: dict[str, Any]) -> str:
    """Why a spread is wide, when the machine was busy (a share of 10 % or more in some round)."""
    shares = [v for m in j["models"] for x in m["rounds"] for k, v in x.items() if k.endswith("_others")]
    return ", so the spread is wide" if shares and max(shares) >= 0.10 else " (a quiet machine)"


def _others(j: dict[str, Any]) -> str:
    shares = [v for m in j["models"] for x in m["rounds"] for k, v in x.items() if k.endswith("_others")]
    return f"{100 * min(shares):.0f}–{100 * max(shares):.0f} %" if shares else "an unknown share"


def imatrix_speed(r: Results) -> str:
    j = r.bench("imatrix_speed.json")
    rows = []
    for m in j["models"]:
        rows.append([m["model"], f"{m['imatrix_ours_s']['median']:.1f} s vs {m['imatrix_llama_s']['median']:.1f} s",
                     _ratio(m["imatrix_ratio"]), _ratio(m["Q3_K_S_ratio"]), _ratio(m["IQ4_XS_ratio"]),
                     "yes" if m["Q3_K_S_identical"] and m["IQ4_XS_identical"] else "**no**"])  # fmt: skip
    return "\n".join(
        [
            table(
                [
                    "model",
                    "imatrix, ours vs llama-imatrix",
                    "imatrix ratio",
                    "Q3_K_S ratio",
                    "IQ4_XS ratio",
                    "byte-identical",
                ],
                rows,
            ),
            "",
            f"Ratios are TailorLM ÷ llama.cpp's tool in the same round (median, then every round); other processes "
            f"took {_others(j)} of the CPUs during these imatrix measurements{_busy_note(j)}; "
            f"{j['models'][0]['chunks']} chunks of 512 tokens; whole calls, model loads and our child process's start "
            f"included. {machine_words(j['machine'])}, {j['threads']} threads, {j['rounds']} rounds; "
            "`tests/bench/results/imatrix_speed.json`.",
        ]
    )


def h200_imatrix(r: Results) -> str:
    j = r.gpu("h200-imatrix.json")
    rows = []
    for m in j["models"]:
        for where in ("gpu", "cpu"):
            s = m.get(f"imatrix_{where}")
            if s:
                rows.append([m["model"], f"imatrix, {where.upper()}", f"{s['ours_s']:.1f} s vs {s['llama_s']:.1f} s",
                             f"{s['ratio']:.2f}×", "yes" if s["same_entries_and_counts"] else "**no**",
                             f"{s['worst_rel_diff']:.1e}"])  # fmt: skip
        for q in ("Q4_K_M", "IQ3_XXS"):
            s = m.get(f"quantize_{q}")
            if s:
                rows.append([m["model"], f"quantize {q} + matrix", f"{s['ours_s']:.1f} s vs {s['llama_s']:.1f} s",
                             f"{s['ratio']:.2f}×", "byte-identical" if s["identical"] else "**differs**", ""])  # fmt: skip
    return "\n".join(
        [
            table(
                [
                    "model (random weights, real widths)",
                    "step",
                    "ours vs llama.cpp",
                    "ratio",
                    "same entries and counts / file",
                    "largest sum difference",
                ],
                rows,
            ),
            "",
            f"{j['gpu']}, {j['cpu_threads']} CPU threads; `tests/gpu/results/h200-imatrix.json`.",
        ]
    )

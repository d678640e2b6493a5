"""``tailorlm quality REFERENCE CANDIDATE``: what a quantization costs, measured on this machine.

Same rules as every command group: a thin client (the work is :func:`app.engine.quality_eval.evaluate`),
``--json`` for scripts, ``TailorError`` becomes one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import gguf_path
from app.core.errors import TailorError

# KLD label (app.core.advice.quality's bands) → what it means for the user, in words.
_VERDICTS = {
    "lossless": "loses nothing measurable",
    "excellent": "loses very little",
    "very good": "loses very little",
    "good": "loses little",
    "fair": "loses noticeably",
    "poor": "loses a lot",
}


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "quality",
        help="perplexity and KL divergence of CANDIDATE against REFERENCE (e.g. Q4_K_M against Q8_0)",
    )
    p.add_argument("reference", help="the reference .gguf (the larger quantization) or a library id")
    p.add_argument("candidate", help="the .gguf to judge: a quantization of the same model")
    p.add_argument("--text", type=Path, metavar="FILE",
                   help="a UTF-8 text to score (default: a built-in text of ~3,500 tokens)")  # fmt: skip
    p.add_argument("--ctx", type=int, default=512, metavar="N",
                   help="tokens per chunk; the second half of each is scored (default 512, as llama-perplexity)")  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads (default: physical cores)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_quality)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TailorError(f"{path} is not UTF-8 text.", hint="Save it as UTF-8 and try again.") from None
    except OSError as exc:
        raise TailorError(f"Cannot read {path}: {exc.strerror}.") from None


def cmd_quality(args: argparse.Namespace) -> int:
    from app.core.advice.measured_quality import record
    from app.core.model.source import model_from_gguf
    from app.engine.quality_eval import default_text, evaluate

    ref, cand = gguf_path(args.reference), gguf_path(args.candidate)
    infos = [model_from_gguf(p) for p in (ref, cand)]  # also rejects non-GGUF files
    quants = [m.file_type or p.stem for m, p in zip(infos, (ref, cand), strict=True)]
    text = read_text(args.text) if args.text else default_text()

    def progress(fraction: float) -> None:
        if not args.json:
            print(f"\rscoring: {fraction:4.0%}", end="", file=sys.stderr, flush=True)

    result = evaluate(ref, cand, text, n_ctx=args.ctx, n_threads=args.threads, on_progress=progress)
    record(infos[1], quants[0], quants[1], result.to_dict())  # `tailorlm advise` shows it from now on
    if args.json:
        print(json.dumps({**result.to_dict(), "reference_quant": quants[0], "candidate_quant": quants[1],
                          "text": str(args.text) if args.text else "built-in"}, indent=2))  # fmt: skip
        return 0
    print(file=sys.stderr)
    _print_table(result, quants, str(args.text) if args.text else "built-in text")
    return 0


def _print_table(r: Any, quants: list[str], text_name: str) -> None:
    from app.core.advice.quality import _label

    q_ref, q_cand = quants
    print(f"reference  {q_ref:8} {r.reference}")
    print(f"candidate  {q_cand:8} {r.candidate}")
    print(f"text       {text_name}: {r.n_text_tokens:,} tokens, {r.n_chunks} chunks of {r.n_ctx}, "
          f"{r.n_tokens:,} scored\n")  # fmt: skip
    rows = [
        ("perplexity, reference", f"{r.ppl_ref:.3f}"),
        ("perplexity, candidate", f"{r.ppl_cand:.3f} ({100 * r.ppl_change:+.1f} %)"),
        ("mean KL divergence", f"{r.kld_mean:.5f}"),
        ("99th percentile KLD", f"{r.kld_p99:.4f}"),
        ("top-1 agreement", f"{100 * r.top1_agreement:.1f} %"),
        ("speed", f"{r.tok_s:,.0f} tok/s ({r.ref_tok_s:,.0f} and {r.cand_tok_s:,.0f} per model), "
                  f"{r.elapsed_s:.1f} s in all"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"{name:24} {value}")
    verdict = _VERDICTS[_label(r.kld_mean)]
    print(
        f"\n{q_cand} {verdict}: {100 * r.top1_agreement:.0f} % of next-token choices are the same as {q_ref}'s."
    )

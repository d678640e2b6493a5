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
    from app.core.advice.ladder import DEFAULT_LADDER

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

    p = sub.add_parser("ladder", help="quantize MODEL to several types (with and without an importance "
                                      "matrix), score each against it, and mark the size/quality front")  # fmt: skip
    p.add_argument("model", help="the source .gguf (F16/BF16/Q8_0 is best) or a library id")
    p.add_argument("--types", metavar="T,T,…", help=f"types to measure (default: {','.join(DEFAULT_LADDER)})")
    p.add_argument("--imatrix", metavar="FILE|auto",
                   help="an importance matrix, or `auto` to compute one from the built-in text first")  # fmt: skip
    p.add_argument(
        "--text", type=Path, metavar="FILE", help="the text to score on (default: the built-in one)"
    )
    p.add_argument("--ctx", type=int, default=512, metavar="N", help="tokens per scored chunk (default 512)")
    p.add_argument("--keep-files", type=Path, metavar="DIR", help="keep the quantized files in DIR")
    p.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads (default: physical cores)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ladder)


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


def _ladder_line(p: Any) -> tuple[str, float, str]:
    return (f"{p.step}", p.fraction,
            f"{p.step}/{p.n_steps} {p.name:16} {p.stage:8} {100 * p.fraction:5.1f} %")  # fmt: skip


def cmd_ladder(args: argparse.Namespace) -> int:
    from app.cli.progress import long_work, on_terminal
    from app.core.units import format_bytes
    from app.engine.imatrix import compute_imatrix, default_imatrix_path
    from app.engine.ladder import quality_ladder

    source = gguf_path(args.model)
    types = [t.strip().upper() for t in args.types.split(",") if t.strip()] if args.types else None
    text = read_text(args.text) if args.text else None
    imatrix = None
    with long_work(_ladder_line, show=on_terminal(args.json), stopped="Stopped.") as (bar, cancel):
        if args.imatrix == "auto":
            imatrix = default_imatrix_path(source)
            if not imatrix.exists():  # made once per model, then reused
                if not args.json:
                    print(f"Computing an importance matrix for {source.name} (once)…", file=sys.stderr)
                compute_imatrix(source, imatrix, n_threads=args.threads, cancel=cancel)
        elif args.imatrix:
            imatrix = Path(args.imatrix)
        result = quality_ladder(source, **({"types": types} if types else {}), imatrix=imatrix, text=text,
                                n_ctx=args.ctx, n_threads=args.threads, keep_dir=args.keep_files,
                                on_progress=bar, cancel=cancel)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(
        f"{source.name} ({result.reference_quant}) against its quantizations"
        + (f", importance matrix {Path(result.imatrix).name}" if result.imatrix else "")
        + ":\n"
    )
    print(f"{'':2}{'type':18}{'size':>11}{'bits/w':>8}{'mean KLD':>10}{'KLD p99':>9}{'top-1':>8}")
    for r in result.rungs:
        print(f"{'*' if r.pareto else ' ':2}{r.name:18}{format_bytes(r.size_bytes):>11}{r.bits_per_weight:>8.2f}"
              f"{r.kld_mean:>10.4f}{r.kld_p99:>9.3f}{100 * r.top1_agreement:>7.1f}%")  # fmt: skip
    print("\n* on the size/quality front: nothing else is both smaller and closer to the source.")
    from app.core.advice.ladder import imatrix_gains

    for quant, gain in imatrix_gains(result.rungs).items():
        print(f"{quant}: the importance matrix removes {100 * gain:.0f} % of the divergence.")
    if result.skipped:
        print(f"Left out, they need an importance matrix: {', '.join(result.skipped)} (try --imatrix auto).")
    print("`tailorlm advise` uses these measurements for this model from now on.")
    return 0

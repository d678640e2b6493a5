"""``tailorlm convert`` and ``tailorlm quantize``: make the GGUF the advisor recommends.

Same rules as every command group: a thin client of the core and engine, ``--json`` for scripts,
``TailorError`` becomes one line on stderr, Ctrl+C cancels and leaves no half file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.progress import long_work, on_terminal
from app.core.units import format_bytes


def _build_line(p: Any) -> tuple[str, float, str]:
    return p.stage, p.fraction, f"{p.stage:9} {100 * p.fraction:5.1f} %  {p.detail[:50]:50}"


def _run_build(args: argparse.Namespace, source: Path) -> int:
    from app.engine.build import build_gguf
    from app.engine.quantize import parse_keep

    with long_work(_build_line, show=on_terminal(args.json), stopped="Stopped; nothing was kept.") as (
        bar,
        cancel,
    ):
        result = build_gguf(source, args.to, out=Path(args.out) if args.out else None, n_threads=args.threads or 0,
                            on_progress=bar, cancel=cancel, imatrix=Path(args.imatrix) if args.imatrix else None,
                            keep=parse_keep(args.keep or []))  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    took = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings_s.items())
    print(f"Wrote {result.path} ({result.file_type}, {format_bytes(result.size_bytes)}; {took}).")
    print(f"It loads and writes: {result.sample.strip()!r}. Library id: {result.library_id}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from app.core.build import convert

    if args.remove_env:
        removed = convert.remove_converter()
        print(
            "Removed the converter's environment."
            if removed
            else "The converter's environment was not there."
        )
        return 0
    if args.setup or not convert.converter_ready():
        if not args.json:
            print(
                "Setting up llama.cpp's converter in its own environment (once; about 1.2 GB)…",
                file=sys.stderr,
            )
        env = convert.setup_converter(on_line=None if args.json else (lambda line: None))
        if args.setup:
            print(f"The converter is ready in {env}.")
            return 0
    if not args.folder:
        raise SystemExit("tailorlm convert: give a checkpoint folder (or --setup / --remove-env)")
    return _run_build(args, Path(args.folder))


def cmd_quantize(args: argparse.Namespace) -> int:
    return _run_build(args, Path(args.gguf))


def _imatrix_line(p: Any) -> tuple[str, float, str]:
    return (
        "imatrix",
        p.chunks_done / p.n_chunks,
        f"imatrix  chunk {p.chunks_done}/{p.n_chunks}  {p.tok_s:,.0f} tok/s",
    )


def cmd_imatrix(args: argparse.Namespace) -> int:
    from app.cli.common import gguf_path
    from app.cli.quality import read_text
    from app.engine.imatrix import compute_imatrix

    model = gguf_path(args.model)
    text = read_text(args.text) if args.text else None
    with long_work(_imatrix_line, show=on_terminal(args.json), stopped="Stopped; nothing was kept.") as (
        bar,
        cancel,
    ):
        result = compute_imatrix(model, Path(args.out), text=text, text_name=args.text.name if args.text else None,
                                 n_ctx=args.ctx, n_chunks=args.chunks, n_threads=args.threads, n_gpu_layers=args.ngl,
                                 on_progress=bar, cancel=cancel)  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(
        f"Wrote {result.path}: {result.n_entries} weight matrices, {result.n_chunks} chunks of {args.ctx} tokens "
        f"({result.n_tokens:,} tokens at {result.n_tokens / result.eval_s:,.0f} tok/s, {result.elapsed_s:.1f} s in all)."
    )
    print(f"Use it: tailorlm quantize {args.model} --to IQ3_XXS --imatrix {result.path}")
    return 0


def add_parsers(sub: Any) -> None:
    from app.engine.quantize import QUANT_TYPES

    p = sub.add_parser("convert", help="convert a Hugging Face checkpoint folder to GGUF (and quantize it)")
    p.add_argument("folder", nargs="?", help="a folder with config.json, tokenizer and .safetensors")
    p.add_argument("--to", default="Q4_K_M", choices=QUANT_TYPES, metavar="TYPE",
                   help="target type, e.g. F16, Q8_0, Q4_K_M (default Q4_K_M)")  # fmt: skip
    p.add_argument("--out", metavar="FILE", help="output .gguf (default: the data folder's models/)")
    p.add_argument("--threads", type=int, help="quantizer threads (default: all cores)")
    _add_quant_options(p)
    p.add_argument("--setup", action="store_true", help="only set up the converter's environment")
    p.add_argument("--remove-env", action="store_true", help="delete the converter's environment")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("quantize", help="quantize (or requantize) a GGUF with llama.cpp's quantizer")
    p.add_argument("gguf", help="the source .gguf (F16/BF16/Q8_0 is best)")
    p.add_argument("--to", required=True, choices=QUANT_TYPES, metavar="TYPE", help="e.g. Q5_K_M")
    p.add_argument("--out", metavar="FILE", help="output .gguf (default: the data folder's models/)")
    p.add_argument("--threads", type=int, help="threads (default: all cores)")
    _add_quant_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("imatrix", help="compute a model's importance matrix from a calibration text")
    p.add_argument("model", help="the .gguf to measure (F16/BF16/Q8_0 is best) or a library id")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="where to write it (llama-imatrix's GGUF format)"
    )
    p.add_argument("--text", type=Path, metavar="FILE",
                   help="a UTF-8 calibration text (default: a built-in text of ~8,000 words in many styles)")  # fmt: skip
    p.add_argument("--chunks", type=int, default=0, metavar="N", help="use at most N chunks (default: all)")
    p.add_argument(
        "--ctx", type=int, default=512, metavar="N", help="tokens per chunk (default 512, as llama-imatrix)"
    )
    p.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads (default: physical cores)"
    )
    p.add_argument("--ngl", type=int, default=0, metavar="N", help="layers on the GPU (default 0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_imatrix)


def _add_quant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--imatrix", metavar="FILE",
                   help="an importance matrix (from `tailorlm imatrix` or llama-imatrix): needed by IQ1–IQ3 and Q2_K_S")  # fmt: skip
    p.add_argument("--keep", action="append", metavar="PATTERN=TYPE",
                   help="give tensors whose name matches PATTERN this type, e.g. attn_v=Q8_0 (repeatable)")  # fmt: skip

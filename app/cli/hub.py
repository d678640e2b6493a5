"""``tailorlm search | files | pull | list | rm``: the Hub and the model library from a terminal.

Same rules as every command group: a thin client of ``app.core``,
``--json`` for scripts, ``TailorError`` becomes one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import budget_of, fit_word, hardware_flags, reserve_flag
from app.cli.progress import long_work, on_terminal
from app.core.advice.speed_words import format_tok_s
from app.core.errors import TailorError
from app.core.units import format_bytes


def _reachable() -> None:
    """Offline: one line within a second, before the hardware probe or any other work."""
    from app.core.hub.online import require_online

    require_online()


def cmd_search(args: argparse.Namespace) -> int:
    from app.core.hub.repo import search_models

    _reachable()
    found = search_models(args.query, limit=args.limit)
    if args.json:
        print(json.dumps([vars(m) for m in found], indent=2))
        return 0
    if not found:
        print(f"No GGUF repos match {args.query!r}.")
        return 0
    print(f"{'repo':60} {'downloads':>10} {'likes':>6}")
    for m in found:
        print(f"{m.repo_id[:60]:60} {m.downloads:>10,} {m.likes:>6}{'  (gated)' if m.gated else ''}")
    return 0


def _planned(args: argparse.Namespace) -> tuple[list[Any], Any]:
    from app.core.advice.hub_fit import plan_files
    from app.core.hub.repo import list_gguf_files

    _reachable()
    files = list_gguf_files(args.repo)
    if not files:
        raise TailorError(f"{args.repo} has no GGUF files.",
                          hint="Give a repo with .gguf files, e.g. a '-GGUF' repo.")  # fmt: skip
    return files, plan_files(args.repo, files, budget_of(args), args.ctx)


def cmd_files(args: argparse.Namespace) -> int:
    """A repo's GGUF files, each sized up by the advisor from its remote header."""
    from app.core.advice.hub_fit import recommended_file

    _, planned = _planned(args)
    best = recommended_file(planned)
    rows = [{"paths": list(fp.repo_file.file.paths), "quant": fp.plan.quant, "size_bytes": fp.repo_file.file.size_bytes,
             "sha256": list(fp.repo_file.sha256), "recommended": fp is best, "plan": fp.plan.to_dict()}
            for fp in planned]  # fmt: skip
    if args.json:
        print(json.dumps({"repo": args.repo, "n_ctx": args.ctx, "files": rows}, indent=2))
        return 0
    print(f"  {'file':56} {'quant':8} {'size':>10} {'fits':>8} {'RAM':>10} {'VRAM':>10} {'tok/s':>6}")
    for r in rows:
        p = r["plan"]
        size = format_bytes(r["size_bytes"]) if r["size_bytes"] else "?"
        fits = fit_word(p["placement"]) if p["fits"] else "no"
        mark = "* " if r["recommended"] else "  "
        print(f"{mark}{r['paths'][0][:56]:56} {r['quant']:8} {size:>10} {fits:>8} {format_bytes(p['ram_bytes']):>10} "
              f"{format_bytes(p['vram_bytes']) if p['vram_bytes'] else '-':>10} {format_tok_s(p['tok_s']):>6}")  # fmt: skip
    if best is not None:
        print(
            f"* recommended for this machine: `tailorlm pull {args.repo} --file {best.repo_file.file.first}`"
        )
    return 0


def _download_line(p: Any) -> tuple[str, float, str]:
    fraction = p.done_bytes / p.total_bytes if p.total_bytes else 0.0
    eta = f"{p.eta_s:.0f} s" if p.eta_s is not None else "?"
    part = f" part {p.part}/{p.n_parts}" if p.n_parts > 1 else ""
    return "download", fraction, (f"{100 * fraction:5.1f} %  {format_bytes(p.done_bytes)} of {format_bytes(p.total_bytes)}  "
                                  f"{format_bytes(int(p.speed_bytes_s))}/s  ETA {eta}{part}   ")  # fmt: skip


def cmd_pull(args: argparse.Namespace) -> int:
    """Download one GGUF model of a repo (all parts), verified, into the HF cache; register it."""
    from app.core.advice.hub_fit import recommended_file
    from app.core.hub.repo import list_gguf_files, select_file
    from app.core.library.pull import pull_model
    from app.core.library.registry import Library

    if args.quant or args.file:
        _reachable()
        files = list_gguf_files(args.repo)
        rf = select_file(files, quant=args.quant, filename=args.file)
        why = "as asked"
    else:
        _, planned = _planned(args)
        best = recommended_file(planned)
        if best is None:
            raise TailorError(f"No file of {args.repo} fits this machine with a {args.ctx:,}-token context.",
                              hint="Run `tailorlm files REPO` to see what each needs, or pick one with --file.")  # fmt: skip
        rf, why = best.repo_file, f"the advisor's pick for this machine ({fit_word(best.plan.fits)})"
    size = format_bytes(rf.file.size_bytes) if rf.file.size_bytes else "unknown size"
    if not args.json:
        print(
            f"Pulling {args.repo}/{rf.file.first} ({rf.file.quant or '?'}, {size}) — {why}.", file=sys.stderr
        )
    stopped = "Download stopped. Run the same command again to resume where it stopped."
    with long_work(_download_line, show=on_terminal(args.json) or args.progress, stopped=stopped) as (
        show,
        cancel,
    ):
        paths, entry = pull_model(args.repo, rf, library=Library(), on_progress=show, cancel=cancel)
    if args.json:
        print(json.dumps({"id": entry.id, "repo": args.repo, "paths": [str(p) for p in paths],
                          "quant": entry.quant, "size_bytes": entry.size_bytes, "sha256": list(rf.sha256)}, indent=2))  # fmt: skip
    else:
        print(f"Verified and added as {entry.id}: {paths[0]}")
        print(f"Chat with it: tailorlm chat {entry.id}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from app.core.library.registry import Library

    lib = Library()
    if args.add_folder:
        lib.add_folder(Path(args.add_folder).expanduser().resolve())
    report = lib.scan_report()
    models = list(report.models)
    for problem in report.problems:  # one bad file never hides the others: it is named and skipped
        print(f"tailorlm: skipped {problem.path}: {problem.reason}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"id": m.id, "paths": [str(p) for p in m.paths], "origin": m.origin, "owned": m.owned,
                           "size_bytes": m.size_bytes, "repo": m.repo, "quant": m.quant, "arch": m.arch,
                           "name": m.name, "n_params": m.n_params, "context_length": m.context_length,
                           "present": m.present} for m in models], indent=2))  # fmt: skip
        return 0
    if not models:
        print("No models yet. Find one with `tailorlm search QUERY`, then `tailorlm pull REPO`.")
        return 0
    print(f"{'id':44} {'quant':8} {'size':>10} {'from':10} path")
    for m in models:
        flag = "" if m.present else "  (missing)"
        print(
            f"{m.id[:44]:44} {m.quant or '?':8} {format_bytes(m.size_bytes):>10} {m.origin:10} {m.path}{flag}"
        )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from app.core.library.registry import Library

    lib = Library()
    lib.scan()
    m = lib.remove(args.model, delete_files=args.delete)
    what = "deleted its files and removed" if args.delete else "removed"
    if args.json:
        print(json.dumps({"id": m.id, "deleted": bool(args.delete), "paths": [str(p) for p in m.paths]}))
    else:
        print(f"{what} {m.id} from the library." + ("" if args.delete else f" The file stays at {m.path}."))
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("search", help="find GGUF repos on the Hugging Face Hub, most downloaded first")
    p.add_argument("query", help="words in the repo name, e.g. 'llama 3.2 1b'")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_search)

    for name, helptext, func in (
        ("files", "a Hub repo's GGUF files, each sized up for this machine (from remote headers)", cmd_files),
        (
            "pull",
            "download a GGUF model from the Hub (resumable, verified) into the shared HF cache",
            cmd_pull,
        ),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("repo", help="a Hub repo id, e.g. bartowski/Llama-3.2-1B-Instruct-GGUF")
        p.add_argument(
            "--ctx", type=int, default=4096, metavar="N", help="context length to plan for (default 4096)"
        )
        reserve_flag(p)
        if name == "pull":
            which = p.add_mutually_exclusive_group()
            which.add_argument("--quant", metavar="TYPE", help="the file of this quantization, e.g. Q4_K_M")
            which.add_argument(
                "--file", metavar="NAME", help="this file (or the first part of a split model)"
            )
            p.add_argument(
                "--progress", action="store_true", help="show progress even when not on a terminal"
            )
        hardware_flags(p)
        p.set_defaults(func=func)

    p = sub.add_parser(
        "list", help="the models in the library and those found on disk (HF cache, LM Studio, Ollama)"
    )
    p.add_argument("--add-folder", metavar="DIR", help="also look for GGUF files in DIR from now on")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("rm", help="remove a model from the library")
    p.add_argument("model", help="its id from `tailorlm list`, its file name or its path")
    p.add_argument(
        "--delete", action="store_true", help="also delete its files (only models TailorLM downloaded)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_rm)

"""``tailorlm profiles``: the runs measured on this machine (issue 19) — list them, export them
without any path or name of yours, import someone else's (used only on the same hardware class)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.core.errors import TailorError
from app.core.units import format_bytes


def cmd_profiles(args: argparse.Namespace) -> int:
    from app.core.advice.profiles import export_profiles, import_profiles
    from app.core.advice.profiles_db import ProfileStore

    with ProfileStore() as store:
        if store.notice is not None:
            print(f"tailorlm: {store.notice.user_message()}", file=sys.stderr)
        if args.action == "export":
            data = json.dumps(export_profiles(store.all()), indent=2)
            if args.file in (None, "-"):
                print(data)
            else:
                Path(args.file).write_text(data + "\n", encoding="utf-8")
            return 0
        if args.action == "import":
            if args.file is None:
                raise TailorError("profiles import: name the file to import.")
            try:
                data = json.loads(Path(args.file).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise TailorError(f"{args.file} is not a profiles export: {exc}.") from None
            added = import_profiles(data, store)
            print(
                f"Imported {added} profiles (marked as measured elsewhere; used for the same hardware only)."
            )
            return 0
        rows = store.all(limit=args.limit)
    if args.json:
        from app.core.advice.measured_runs import as_dict

        print(json.dumps([{"model": p.model_name, "quant": p.key.quant, "n_ctx": p.key.n_ctx,
                           "n_gpu_layers": p.key.n_gpu_layers, "hardware": p.hardware_class, **as_dict(p)}
                          for p in rows], indent=2))  # fmt: skip
        return 0
    for p in rows:
        m = p.measured
        speed = f"{m.gen_tok_s:.1f} tok/s" if m.gen_tok_s is not None else m.outcome
        ram = format_bytes(m.peak_ram_bytes) if m.peak_ram_bytes is not None else "—"
        print(f"{m.when[:16]}  {p.model_name[:30]:30} {p.key.quant:8} ctx {p.key.n_ctx:>7,} ngl {p.key.n_gpu_layers:>3}  "
              f"{ram:>10}  {speed}{'  (imported)' if p.source == 'imported' else ''}")  # fmt: skip
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("profiles", help="runs measured on this machine: list, export, import")
    p.add_argument("action", nargs="?", choices=("list", "export", "import"), default="list")
    p.add_argument(
        "file", nargs="?", help="export: where to write (default: stdout); import: the file to read"
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profiles)

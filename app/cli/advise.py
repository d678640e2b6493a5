"""``tailorlm hw | advise | catalog``: this machine, and which quantization of a model fits it."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from app.cli.common import (
    any_model,
    budget_of,
    fit_word,
    hardware_flags,
    machine_profile,
    reserve_flag,
    workers_of,
)
from app.core.advice.policy import comfortable
from app.core.advice.speed_words import format_tok_s
from app.core.errors import TailorError
from app.core.units import format_bytes


def cmd_hw(args: argparse.Namespace) -> int:
    profile = machine_profile(args)
    data = profile.to_dict()
    workers = workers_of(args)
    if workers:
        data["workers"] = [_worker_dict(w) for w in workers]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    cpu = profile.cpu
    print(f"CPU     {cpu.model} — {cpu.physical_cores} cores / {cpu.logical_cores} threads ({cpu.arch})")
    print(f"        instruction sets: {', '.join(cpu.isa) or 'none detected'}")
    print(
        f"RAM     {format_bytes(profile.ram_total_bytes)} total, {format_bytes(profile.ram_available_bytes)} available"
    )
    if profile.ram_bandwidth_bytes_s:
        how = "measured" if profile.ram_bandwidth_measured else "assumed; not measured"
        print(f"        bandwidth ~{profile.ram_bandwidth_bytes_s / 1e9:.1f} GB/s ({how})")
    if not profile.gpus:
        print("GPU     none found")
    for g in profile.gpus:
        free = format_bytes(g.vram_free_bytes) if g.vram_free_bytes is not None else "?"
        total = format_bytes(g.vram_total_bytes) if g.vram_total_bytes is not None else "?"
        extra = f", compute {g.compute_capability}" if getattr(g, "compute_capability", None) else ""
        print(f"GPU{g.index}    {g.name}: {free} free of {total}{extra}")
    off = profile.offload
    backends = ", ".join(off.backends) if off.backends else "none"
    print(f"llama.cpp offload: {'yes' if off.supported else 'no'} (backends: {backends})")
    for note in profile.notes:
        print(f"note    {note}")
    for o in profile.overrides:
        print(f"override {o}")
    for line in _worker_lines(workers):
        print(line)
    return 0


def _worker_dict(w: Any) -> dict[str, Any]:
    return {"endpoint": str(w.endpoint), "usable": w.usable, "error": w.error or None, "protocol": w.version or None,
            "round_trip_ms": round(w.rtt_s * 1000, 3),
            "devices": [{"index": d.index, "free_bytes": d.free_bytes, "total_bytes": d.total_bytes}
                        for d in w.devices]}  # fmt: skip


def _worker_lines(workers: tuple[Any, ...]) -> list[str]:
    from app.core.machine.workers import worker_lines

    return [f"Worker  {line}" for line in worker_lines(workers)]


def cmd_advise(args: argparse.Namespace) -> int:
    from app.core.advice.recommend import advise

    model = any_model(args.model)
    profile = machine_profile(args)
    budget = budget_of(args, profile)
    contexts = (args.ctx,) if args.ctx else None
    from app.core.advice.measured_quality import measured

    here = measured(model)  # this model's own quality measurements replace the published ones they cover
    from app.core.advice.measured_runs import corrections, measured_runs, over_budget
    from app.core.advice.profiles import failed_runs

    found = _runs_here(model, profile)  # and its runs here: a plan that failed is not recommended again
    failed = failed_runs(found)
    advice = advise(model, budget, n_ctx=args.ctx, contexts=contexts, min_tok_s=args.min_tok_s, measured=here,
                    failed_here=failed)  # fmt: skip
    fixes = corrections(advice.plans, found)  # plans near a measured run, corrected by it
    worse = over_budget(advice.plans, fixes, budget)
    if worse.keys() - failed.keys():  # a measured run says a plan that seemed to fit does not
        advice = advise(model, budget, n_ctx=args.ctx, contexts=contexts, min_tok_s=args.min_tok_s, measured=here,
                        failed_here={**worse, **failed})  # fmt: skip
        fixes = corrections(advice.plans, found)
    check = _dry_run_check(model, advice) if args.dry_run else None
    runs = measured_runs(advice.plans, found)
    pooling: tuple[str, ...] = ()
    if workers_of(args):
        from app.core.advice.pooling import pooling_words

        alone = advise(model, budget_of(args, profile, workers=False),
                       n_ctx=args.ctx, contexts=contexts, min_tok_s=args.min_tok_s, measured=here, failed_here=failed)  # fmt: skip
        pooling = pooling_words(advice, alone)
    if args.json:
        out = {
            "measured_quality": here,
            "dry_run": check,
            "model": _model_dict(model),
            "budget": {
                "ram_bytes": budget.ram_bytes,
                "gpus": [{"name": g.name, "free_bytes": g.free_bytes} for g in budget.gpus],
                "can_offload": budget.can_offload,
                # factor per speed-model term from this machine's benchmark runs; {} = none yet
                "speed_calibration": dict(budget.speed_calibration),
            },
            "target_ctx": advice.target_ctx,
            "plans": [
                {**p.to_dict(), "measured": run, "corrected": fix}
                for p, run, fix in zip(advice.plans, runs, fixes, strict=True)
            ],
            "recommended": _with_run(advice.recommended, advice.plans, runs, fixes),
            "reasons": list(advice.reasons),
            "warnings": list(advice.warnings),
            "workers": [_worker_dict(w) for w in workers_of(args)],
            "pooling": list(pooling),
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{model.name}  ({model.architecture}, {model.n_params / 1e9:.2f} B parameters, "
          f"{model.n_layer} layers, trained context {model.n_ctx_train:,})")  # fmt: skip
    lent = sum(g.free_bytes for g in budget.gpus if g.backend == "rpc")
    gpu = (
        f", {format_bytes(budget.gpus[0].free_bytes)} VRAM"
        if budget.gpus and budget.can_offload and not lent
        else ""
    )
    gpu += f", {format_bytes(lent)} on workers" if lent else ""
    print(f"Budget: {format_bytes(budget.ram_bytes)} RAM{gpu} (after headroom)\n")
    moe = model.is_moe
    experts_col = f" {'experts in RAM':>14}" if moe else ""
    header = (f"{'quant':9} {'file':>10} {'ctx':>7} {'fits':>8} {'GPU layers':>10}{experts_col} {'RAM':>10} "
              f"{'VRAM':>10} {'tok/s':>6}  quality")  # fmt: skip
    print(header)
    print("-" * len(header))
    rec = advice.recommended
    for p in advice.plans:
        if p.n_ctx != advice.target_ctx:
            continue
        mark = "  <- recommended" if rec is not None and p.quant == rec.quant and p.n_ctx == rec.n_ctx else ""
        dom = f" (worse than {p.dominated_by})" if p.dominated_by else ""
        experts = ""
        if moe:
            n = p.moe_cpu_layers
            experts = f" {'all' if n >= model.n_layer else (f'{n} layers' if n else '-'):>14}"
        print(f"{p.quant:9} {format_bytes(p.file_bytes):>10} {p.n_ctx:>7} {fit_word(p.fits):>8} {p.n_gpu_layers:>10}{experts} "
              f"{format_bytes(p.ram_bytes):>10} {format_bytes(p.vram_bytes) if p.vram_bytes else '-':>10} "
              f"{format_tok_s(p.speed.tok_s):>6}  {p.quality.label}{dom}{mark}")  # fmt: skip
    print()
    for r in advice.reasons:
        print(f"* {r}")
    for p, run in zip(advice.plans, runs, strict=True):
        if run is not None:
            print(f"* Measured here ({run['when'][:10]}): {p.quant} with a {p.n_ctx:,}-token context and "
                  f"{p.n_gpu_layers} GPU layers — {_run_words(run)}.")  # fmt: skip
    rec_fix = fixes[advice.plans.index(rec)] if rec is not None else None
    if rec is not None and rec_fix is not None:
        print(f"* Corrected by a run of this file here with a {rec_fix['from']['n_ctx']:,}-token context: "
              f"{_fix_words(rec, rec_fix)}.")  # fmt: skip
    for w in advice.warnings:
        print(f"! {w}")
    for line in pooling:
        print(f"* {line}")
    if here:
        from app.core.advice.quality import quality_of

        print("\nMeasured on this machine (`tailorlm quality`), beside the published number vs F16:")
        for quant, m in sorted(here.items()):
            with contextlib.suppress(ValueError):
                pub = quality_of(quant).kld
                print(f"  {quant:8} vs {m['reference']:6} KLD {m['kld_mean']:.4f}, same top token "
                      f"{100 * m['top1_agreement']:.0f} %   (published: KLD {pub:.4f})")  # fmt: skip
    if check:
        print(f"\nllama.cpp dry run of this file ({check['quant']}, {check['n_ctx']:,} tokens, CPU):")
        for key in ("kv", "compute", "output"):
            print(
                f"  {key:8} llama.cpp {format_bytes(check['llama_cpp'][key]):>10}   TailorLM {format_bytes(check['tailorlm'][key]):>10}"
            )
    return 0


def _dry_run_check(model: Any, advice: Any) -> dict[str, Any] | None:
    """Ask llama.cpp itself (no_alloc dry run, in a child process) to size the file's buffers."""
    if model.source_kind != "gguf":
        raise TailorError("--dry-run needs a local .gguf file.")
    from app.core.advice.estimate import RunSettings, estimate
    from app.engine.memory_probe import probe_in_child

    ctx = advice.target_ctx
    spec = {"model": model.source, "n_ctx": ctx, "flash_attn": "on", "dry_run": True}
    run = probe_in_child(spec, timeout_s=120)
    ours = estimate(model, None, RunSettings(n_ctx=ctx, cpu_isa=advice.budget.cpu_isa)).device("CPU")
    return {
        "quant": model.file_type,
        "n_ctx": ctx,
        "llama_cpp": {
            "kv": run["kv_size_bytes"],
            "compute": sum(run["compute_buffers"].values()),
            "output": sum(run["output_buffers"].values()),
        },
        "tailorlm": {"kv": ours.kv_bytes, "compute": ours.compute_bytes, "output": ours.output_bytes},
    }


def _model_dict(model: Any) -> dict[str, Any]:
    return {
        "name": model.name,
        "source": model.source,
        "source_kind": model.source_kind,
        "architecture": model.architecture,
        "n_params": model.n_params,
        "n_layer": model.n_layer,
        "n_embd": model.n_embd,
        "n_head": model.n_head[0] if model.n_head else 0,
        "n_head_kv": model.n_head_kv[0] if model.n_head_kv else 0,
        "head_dim": model.head_dim_k,
        "n_ff": model.n_ff,
        "n_vocab": model.n_vocab,
        "n_ctx_train": model.n_ctx_train,
        "sliding_window": model.sliding_window,
        "n_swa_layers": sum(model.swa_layers),
        "n_expert": model.n_expert,
        "n_expert_used": model.n_expert_used,
        "tied_embeddings": model.tied_embeddings,
        "file_type": model.file_type,
        "file_size_bytes": model.file_size_bytes,
    }


def cmd_catalog(args: argparse.Namespace) -> int:
    from app.core.advice.recommend import advise
    from app.core.model.catalog import load_catalog
    from app.core.model.source import model_from_catalog

    profile = machine_profile(args)
    budget = budget_of(args, profile)
    rows = []
    for entry in load_catalog():
        model = model_from_catalog(entry)
        advice = advise(model, budget, n_ctx=args.ctx, contexts=(args.ctx,), min_tok_s=args.min_tok_s)
        rows.append((entry, advice.recommended))

    # Best first: what runs at a usable speed, then what runs slowly, then what does not fit;
    # within each, the most capable (largest) model first, then the best quality.
    def rank(row: tuple[Any, Any]) -> tuple[int, float, float]:
        entry, plan = row
        group = 2 if plan is None else (0 if comfortable(plan.speed.tok_s, args.min_tok_s) else 1)
        return (group, -entry.params_b, plan.quality.kld if plan else 0.0)

    rows.sort(key=rank)
    if args.json:
        print(json.dumps([
            {"id": e.id, "name": e.name, "params_b": e.params_b, "gguf_repos": list(e.gguf_repos),
             "recommended": p.to_dict() if p else None}
            for e, p in rows
        ], indent=2))  # fmt: skip
        return 0
    print(f"{'model':36} {'params':>7} {'quant':>8} {'fits':>8} {'RAM':>10} {'VRAM':>10} {'tok/s':>6}")
    for e, p in rows:
        if p is None:
            print(f"{e.name[:36]:36} {e.params_b:>6.1f}B {'-':>8} {'no':>8}")
            continue
        print(f"{e.name[:36]:36} {e.params_b:>6.1f}B {p.quant:>8} {fit_word(p.fits):>8} {format_bytes(p.ram_bytes):>10} "
              f"{format_bytes(p.vram_bytes) if p.vram_bytes else '-':>10} {format_tok_s(p.speed.tok_s):>6}")  # fmt: skip
    return 0


def add_parsers(sub: Any) -> None:
    p_hw = sub.add_parser("hw", help="show this machine's CPU, RAM and GPUs")
    hardware_flags(p_hw)
    p_hw.set_defaults(func=cmd_hw)

    p_adv = sub.add_parser("advise", help="which quantization and GPU split of MODEL fits this machine")
    p_adv.add_argument(
        "model", help="a .gguf file, a Hugging Face checkpoint folder, a Hub repo id or a catalog name"
    )
    p_adv.add_argument("--ctx", type=int, metavar="N", help="context length in tokens (default 4096)")
    reserve_flag(p_adv)
    p_adv.add_argument("--min-tok-s", type=float, default=5.0, help="slowest acceptable generation speed")
    p_adv.add_argument("--dry-run", action="store_true",
                       help="for a .gguf file: also ask llama.cpp to size its buffers, and compare")  # fmt: skip
    hardware_flags(p_adv)
    p_adv.set_defaults(func=cmd_advise)

    p_cat = sub.add_parser("catalog", help="what this machine can run from the built-in catalog, best first")
    p_cat.add_argument("--ctx", type=int, default=4096, metavar="N", help="context length (default 4096)")
    reserve_flag(p_cat)
    p_cat.add_argument("--min-tok-s", type=float, default=5.0, help="slowest acceptable generation speed")
    hardware_flags(p_cat)
    p_cat.set_defaults(func=cmd_catalog)


def _runs_here(model: Any, machine: Any) -> list[Any]:
    """The profiles of a GGUF file measured on this machine (``tailorlm chat`` and the window record
    every answer and every failed load), or imported for its hardware class; [] for other sources.
    ``machine``: the profile advise plans with; with what-if overrides, this machine as detected."""
    if model.source_kind != "gguf":
        return []
    from app.core.advice.profiles import file_identity, machine_fingerprint
    from app.core.advice.profiles_db import ProfileStore
    from app.core.machine.hardware import detect_machine

    if machine.overrides:  # a what-if is still this machine: its runs are this machine's
        machine = detect_machine(measure_bandwidth=False)
    machine_id, hardware_class = machine_fingerprint(machine)
    with ProfileStore() as store:
        return store.near(
            file_identity(Path(model.source)), machine_id=machine_id, hardware_class=hardware_class
        )


def _with_run(plan: Any, plans: Any, runs: list[dict[str, Any] | None],
              fixes: list[dict[str, Any] | None]) -> dict[str, Any] | None:  # fmt: skip
    if plan is None:
        return None
    i = next(i for i, p in enumerate(plans) if p is plan)
    return {**plan.to_dict(), "measured": runs[i], "corrected": fixes[i]}


def _fix_words(plan: Any, fix: dict[str, Any]) -> str:
    parts = []
    if "ram_bytes" in fix:
        parts.append(f"RAM {format_bytes(fix['ram_bytes'])} (predicted {format_bytes(plan.ram_bytes)})")
    if "vram_bytes" in fix:
        parts.append(f"VRAM {format_bytes(fix['vram_bytes'])} (predicted {format_bytes(plan.vram_bytes)})")
    if "tok_s" in fix:
        parts.append(f"{format_tok_s(fix['tok_s'])} tok/s (predicted {format_tok_s(plan.speed.tok_s)})")
    return ", ".join(parts) or "no figure to correct"


def _run_words(run: dict[str, Any]) -> str:
    if run["outcome"] != "ok":
        return "it ran out of memory" if run["outcome"] == "out_of_memory" else "the model process crashed"
    ram = format_bytes(run["ram_bytes"]) if run["ram_bytes"] is not None else "—"
    vram = f", {format_bytes(run['vram_bytes'])} VRAM" if run["vram_bytes"] else ""
    return f"{ram} RAM{vram}, {run['tok_s']:.1f} tokens/s"

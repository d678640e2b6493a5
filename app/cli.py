"""``tailorlm``: TailorLM's capabilities from a terminal, for people and scripts (``--json``).

A thin client of ``app.core``: it parses arguments, calls core functions and prints. Errors from
the core (``TailorError``) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app import __version__
from app.core.errors import TailorError
from app.core.units import format_bytes, parse_size

EXIT_USAGE = 2


def _profile(args: argparse.Namespace) -> Any:
    from app.core.hardware import apply_overrides, detect_machine

    profile = detect_machine(measure_bandwidth=not getattr(args, "no_bandwidth", False))
    changes: dict[str, int] = {}
    if getattr(args, "ram", None):
        changes["ram_bytes"] = parse_size(args.ram)
    if getattr(args, "vram", None):
        changes["vram_bytes"] = parse_size(args.vram)
    return apply_overrides(profile, **changes) if changes else profile


def _budget(args: argparse.Namespace, profile: Any) -> Any:
    from app.core.recommend import DEFAULT_RAM_RESERVE_BYTES, budget_from_profile

    reserve = parse_size(args.reserve) if getattr(args, "reserve", None) else DEFAULT_RAM_RESERVE_BYTES
    return budget_from_profile(profile, ram_reserve_bytes=reserve)


def cmd_hw(args: argparse.Namespace) -> int:
    profile = _profile(args)
    data = profile.to_dict()
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
    return 0


def _model(spec: str) -> Any:
    from app.cli_hub import library_path
    from app.core.model_source import load_model

    local = library_path(spec)  # a library id, e.g. after `tailorlm pull`
    return load_model(str(local) if local else spec)


def _fit_word(fits: str) -> str:
    return {"gpu": "GPU", "partial": "GPU+CPU", "cpu": "CPU", "no": "no"}[fits]


def cmd_advise(args: argparse.Namespace) -> int:
    from app.core.recommend import advise

    model = _model(args.model)
    profile = _profile(args)
    budget = _budget(args, profile)
    contexts = (args.ctx,) if args.ctx else None
    advice = advise(model, budget, n_ctx=args.ctx, contexts=contexts, min_tok_s=args.min_tok_s)
    check = _dry_run_check(model, advice) if args.dry_run else None
    from app.core.measured_quality import measured

    here = measured(model)
    if args.json:
        out = {
            "measured_quality": here,
            "dry_run": check,
            "model": _model_dict(model),
            "budget": {
                "ram_bytes": budget.ram_bytes,
                "gpus": [{"name": g.name, "free_bytes": g.free_bytes} for g in budget.gpus],
                "can_offload": budget.can_offload,
            },
            "target_ctx": advice.target_ctx,
            "plans": [p.to_dict() for p in advice.plans],
            "recommended": advice.recommended.to_dict() if advice.recommended else None,
            "reasons": list(advice.reasons),
            "warnings": list(advice.warnings),
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{model.name}  ({model.architecture}, {model.n_params / 1e9:.2f} B parameters, "
          f"{model.n_layer} layers, trained context {model.n_ctx_train:,})")  # fmt: skip
    gpu = f", {format_bytes(budget.gpus[0].free_bytes)} VRAM" if budget.gpus and budget.can_offload else ""
    print(f"Budget: {format_bytes(budget.ram_bytes)} RAM{gpu} (after headroom)\n")
    header = f"{'quant':8} {'file':>10} {'ctx':>7} {'fits':>8} {'GPU layers':>10} {'RAM':>10} {'VRAM':>10} {'tok/s':>6}  quality"
    print(header)
    print("-" * len(header))
    rec = advice.recommended
    for p in advice.plans:
        if p.n_ctx != advice.target_ctx:
            continue
        mark = "  <- recommended" if rec is not None and p.quant == rec.quant and p.n_ctx == rec.n_ctx else ""
        dom = f" (worse than {p.dominated_by})" if p.dominated_by else ""
        print(f"{p.quant:8} {format_bytes(p.file_bytes):>10} {p.n_ctx:>7} {_fit_word(p.fits):>8} {p.n_gpu_layers:>10} "
              f"{format_bytes(p.ram_bytes):>10} {format_bytes(p.vram_bytes) if p.vram_bytes else '-':>10} "
              f"{p.speed.tok_s:>6.1f}  {p.quality.label}{dom}{mark}")  # fmt: skip
    print()
    for r in advice.reasons:
        print(f"* {r}")
    for w in advice.warnings:
        print(f"! {w}")
    if here:
        from app.core.quality import quality_of

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
    from app.core.estimate import RunSettings, estimate
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
    from app.core.catalog import load_catalog
    from app.core.model_source import model_from_catalog
    from app.core.recommend import advise

    profile = _profile(args)
    budget = _budget(args, profile)
    rows = []
    for entry in load_catalog():
        model = model_from_catalog(entry)
        advice = advise(model, budget, n_ctx=args.ctx, contexts=(args.ctx,), min_tok_s=args.min_tok_s)
        rows.append((entry, advice.recommended))

    # Best first: what runs at a usable speed, then what runs slowly, then what does not fit;
    # within each, the most capable (largest) model first, then the best quality.
    def rank(row: tuple[Any, Any]) -> tuple[int, float, float]:
        entry, plan = row
        group = 2 if plan is None else (0 if plan.speed.tok_s >= args.min_tok_s else 1)
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
        print(f"{e.name[:36]:36} {e.params_b:>6.1f}B {p.quant:>8} {_fit_word(p.fits):>8} {format_bytes(p.ram_bytes):>10} "
              f"{format_bytes(p.vram_bytes) if p.vram_bytes else '-':>10} {p.speed.tok_s:>6.1f}")  # fmt: skip
    return 0


def _chat_plan(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The load request for ``chat``: the advisor's plan for this file (``--ngl auto``) or the user's."""
    from app.cli_hub import library_path
    from app.core.estimate import RunSettings
    from app.core.model_source import model_from_gguf
    from app.core.recommend import best_plan
    from app.engine.protocol import Load

    path = library_path(args.model) or Path(args.model).expanduser()
    if not path.is_file():
        raise TailorError(
            f"{args.model} is not a .gguf file.", hint="Give the path of a downloaded GGUF model."
        )
    model = model_from_gguf(path)
    ctx = args.ctx or min(4096, model.n_ctx_train or 4096)
    if args.ngl == "auto":
        plan = best_plan(model, model.file_type or "?", ctx, _budget(args, _profile(args)))
        if plan.fits == "no":
            raise TailorError(
                f"{model.name} as {plan.quant} needs {format_bytes(plan.ram_bytes)} of RAM with a {ctx:,}-token "
                "context; this machine cannot give it that.",
                hint="Try a smaller --ctx, or a smaller quantization (`tailorlm advise` lists them).",
            )
        ngl, predicted = plan.n_gpu_layers, {"ram_bytes": plan.ram_bytes, "vram_bytes": plan.vram_bytes}
    else:
        ngl, predicted = int(args.ngl), {}
    s = RunSettings(n_ctx=ctx, n_gpu_layers=ngl)
    load = Load(model_path=str(path), n_ctx=ctx, n_gpu_layers=ngl, n_threads=args.threads or 0,
                type_k=s.type_k, type_v=s.type_v, flash_attn="on" if s.flash_attn else "off")  # fmt: skip
    return load, {"quant": model.file_type, "predicted": predicted}


def cmd_chat(args: argparse.Namespace) -> int:
    from app.core.chat_store import ChatStore
    from app.engine import protocol as P
    from app.engine.chat import ChatSession, Trimmed
    from app.engine.client import EngineClient

    load, plan = _chat_plan(args)
    sampling = P.Sampling(temperature=args.temperature, max_tokens=args.max_tokens, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                          seed=args.seed if args.seed is not None else -1, stop=tuple(args.stop or ()))  # fmt: skip
    with EngineClient() as client, ChatStore() as store:
        session = ChatSession(
            client, store, load, system_prompt=args.system or "", sampling=sampling, plan=plan
        )

        def progress(fraction: float) -> None:
            if args.prompt is None:
                print(
                    f"\rloading {Path(load.model_path).name}: {fraction:4.0%}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

        loaded = session.start(on_progress=progress)
        if args.prompt is None:
            print(file=sys.stderr)
        template_note = session.template.describe() if session.template else ""
        if args.prompt is not None:
            return _chat_once(session, args.prompt, loaded, template_note, plan, as_json=args.json)
        print(f"{Path(load.model_path).name}: {loaded.n_ctx:,}-token context, {load.n_gpu_layers} GPU layers, "
              f"loaded in {loaded.load_s:.1f} s. {template_note}")  # fmt: skip
        print("Type a message. /regen answers again, /edit TEXT rewrites your last message, /export prints "
              "the chat as Markdown. Ctrl+C stops an answer; Ctrl+C at the prompt (or Ctrl+D) exits.")  # fmt: skip
        while True:
            try:
                text = input("\n> ").strip()
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if not text:
                continue
            if text == "/export":
                print(store.export_markdown(session.conversation_id))
                continue
            if text == "/regen":
                gen = session.regenerate()
            elif text.startswith("/edit "):
                users = [m for m in store.thread(session.conversation_id) if m.role == "user"]
                if not users:
                    print("Nothing to edit yet.")
                    continue
                gen = session.edit(users[-1].id, text[len("/edit ") :])
            else:
                gen = session.send(text)
            done = None
            try:
                for ev in gen:
                    if isinstance(ev, Trimmed):
                        print(f"[left out {ev.n_messages} older messages to fit the context]")
                    elif isinstance(ev, P.TokenChunk):
                        print(ev.text, end="", flush=True)
                    else:
                        done = ev
            except KeyboardInterrupt:
                session.cancel()
                for ev in gen:
                    if isinstance(ev, P.Done):
                        done = ev
            if done is not None:
                predicted = plan["predicted"].get("ram_bytes") if plan.get("predicted") else None
                pred = f" (predicted {format_bytes(predicted)})" if predicted else ""
                print(f"\n[{done.n_gen_tokens} tokens, {done.gen_tok_s:.1f} tok/s, first token after "
                      f"{done.ttft_ms:.0f} ms, model process {format_bytes(session.monitor.peak.child_rss_bytes)} RAM{pred}"
                      f"{', stopped' if done.stop_reason == 'cancelled' else ''}]")  # fmt: skip


def _chat_once(session: Any, prompt: str, loaded: Any, template_note: str, plan: dict[str, Any], *,
               as_json: bool) -> int:  # fmt: skip
    from app.engine import protocol as P

    text, done = [], None
    for ev in session.send(prompt):
        if isinstance(ev, P.TokenChunk):
            text.append(ev.text)
            if not as_json:
                print(ev.text, end="", flush=True)
        elif isinstance(ev, P.Done):
            done = ev
    if as_json:
        out = {
            "text": "".join(text).strip(),
            "template": template_note,
            "load": {"load_s": loaded.load_s, "n_ctx": loaded.n_ctx, "flash_attn": loaded.flash_attn,
                     "buffers": loaded.buffers, "rss_bytes": loaded.rss_bytes},
            "plan": plan,
            "metrics": None if done is None else {**{k: getattr(done, k) for k in (
                "stop_reason", "n_prompt_tokens", "n_gen_tokens", "ttft_ms", "prompt_tok_s", "gen_tok_s",
                "rss_bytes", "peak_rss_bytes")},
                "measured_rss_bytes": session.monitor.peak.child_rss_bytes,
                "measured_vram_bytes": session.monitor.peak.child_vram_bytes,
                "load_peak_rss_bytes": session.load_peak.child_rss_bytes},
            "conversation_id": session.conversation_id,
        }  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        print()
    return 0


def cmd_chats(args: argparse.Namespace) -> int:
    from app.core.chat_store import ChatStore

    with ChatStore() as store:
        if args.export is not None:
            if args.format == "json":
                print(json.dumps(store.export_json(args.export), indent=2))
            else:
                print(store.export_markdown(args.export))
            return 0
        convs = store.list_conversations(limit=args.limit)
        if args.json:
            print(json.dumps([{"id": c.id, "title": c.title, "model": c.model, "updated_at": c.updated_at}
                              for c in convs], indent=2))  # fmt: skip
            return 0
        for c in convs:
            print(f"{c.id:>5}  {c.title[:50]:50}  {Path(c.model).name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailorlm",
        description="Which language model, at which quantization, fits this machine.",
    )
    parser.add_argument("--version", action="version", version=f"tailorlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def hardware_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ram", metavar="SIZE", help="plan for this much RAM instead (e.g. 16GB)")
        p.add_argument("--vram", metavar="SIZE", help="plan for a GPU with this much VRAM (e.g. 8GB)")
        p.add_argument("--no-bandwidth", action="store_true", help="skip the memory-bandwidth measurement")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p_hw = sub.add_parser("hw", help="show this machine's CPU, RAM and GPUs")
    hardware_flags(p_hw)
    p_hw.set_defaults(func=cmd_hw)

    p_adv = sub.add_parser("advise", help="which quantization and GPU split of MODEL fits this machine")
    p_adv.add_argument(
        "model", help="a .gguf file, a Hugging Face checkpoint folder, a Hub repo id or a catalog name"
    )
    p_adv.add_argument("--ctx", type=int, metavar="N", help="context length in tokens (default 4096)")
    p_adv.add_argument("--reserve", metavar="SIZE", help="RAM to keep free for the system (default 1GiB)")
    p_adv.add_argument("--min-tok-s", type=float, default=5.0, help="slowest acceptable generation speed")
    p_adv.add_argument("--dry-run", action="store_true",
                       help="for a .gguf file: also ask llama.cpp to size its buffers, and compare")  # fmt: skip
    hardware_flags(p_adv)
    p_adv.set_defaults(func=cmd_advise)

    p_cat = sub.add_parser("catalog", help="what this machine can run from the built-in catalog, best first")
    p_cat.add_argument("--ctx", type=int, default=4096, metavar="N", help="context length (default 4096)")
    p_cat.add_argument("--reserve", metavar="SIZE", help="RAM to keep free for the system (default 1GiB)")
    p_cat.add_argument("--min-tok-s", type=float, default=5.0, help="slowest acceptable generation speed")
    hardware_flags(p_cat)
    p_cat.set_defaults(func=cmd_catalog)

    p_chat = sub.add_parser("chat", help="chat with a GGUF model in the terminal (streaming)")
    p_chat.add_argument("model", help="a .gguf file or a library id (`tailorlm list`)")
    p_chat.add_argument("--ctx", type=int, metavar="N", help="context length (default 4096)")
    p_chat.add_argument(
        "--ngl", default="auto", metavar="N|auto", help="GPU layers; auto = the advisor's plan"
    )
    p_chat.add_argument("--system", metavar="TEXT", help="system prompt")
    p_chat.add_argument("--prompt", metavar="TEXT", help="answer this one message and exit")
    p_chat.add_argument("--temperature", type=float, default=0.7)
    p_chat.add_argument("--max-tokens", type=int, default=512)
    p_chat.add_argument("--seed", type=int)
    p_chat.add_argument("--top-k", type=int, default=40)
    p_chat.add_argument("--top-p", type=float, default=0.95)
    p_chat.add_argument("--min-p", type=float, default=0.05)
    p_chat.add_argument("--repeat-penalty", type=float, default=1.1)
    p_chat.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    p_chat.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p_chat.add_argument("--reserve", metavar="SIZE", help="RAM to keep free for the system (default 1GiB)")
    hardware_flags(p_chat)
    p_chat.set_defaults(func=cmd_chat)

    from app import cli_build, cli_hub, cli_quality

    cli_hub.add_parsers(sub, hardware_flags, lambda a: _budget(a, _profile(a)))
    cli_build.add_parsers(sub)
    cli_quality.add_parsers(sub)

    p_chats = sub.add_parser("chats", help="list saved conversations, or export one")
    p_chats.add_argument("--export", type=int, metavar="ID", help="print conversation ID")
    p_chats.add_argument("--format", choices=("md", "json"), default="md", help="export format (default md)")
    p_chats.add_argument("--limit", type=int, default=50)
    p_chats.add_argument("--json", action="store_true", help="machine-readable list")
    p_chats.set_defaults(func=cmd_chats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from app.core.logs import setup_logging

    setup_logging()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except TailorError as err:
        print(f"tailorlm: {err.user_message()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tailorlm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

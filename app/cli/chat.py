"""``tailorlm chat | chats``: chat with a GGUF model in the terminal, and the saved conversations.

The plan comes from :func:`app.core.advice.chat_plan.plan_chat`, the same planner the window uses:
a plan that does not fit is refused with the reason and the nearest plan that fits, unless
``--force``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.common import budget_of, gguf_path, hardware_flags, reserve_flag
from app.cli.progress import ctrl_c_calls
from app.core.advice.recommend import DEFAULT_CTX
from app.core.advice.run_settings import KV_TYPES
from app.core.errors import TailorError
from app.core.units import format_bytes


def chat_plan(args: argparse.Namespace) -> Any:
    """The ChatPlan for ``chat``'s arguments; raises DoesNotFitError unless it fits or ``--force``."""
    from app.core.advice.chat_plan import ChatOverrides, plan_chat
    from app.core.model.source import model_from_gguf

    if args.ngl == "auto":
        ngl = None
    elif args.ngl.isdigit():
        ngl = int(args.ngl)
    else:
        raise TailorError(f"--ngl {args.ngl}: give a number of layers or auto.")
    model = model_from_gguf(gguf_path(args.model))
    overrides = ChatOverrides(n_ctx=args.ctx, n_gpu_layers=ngl, moe_cpu_layers=moe_cpu_layers(args.moe_cpu, model),
                              type_kv=args.kv_type, force=args.force)  # fmt: skip
    planned = plan_chat(model, budget_of(args), overrides).check()
    if planned.forced:
        print(f"tailorlm: {planned.refusal()} {planned.risk()}", file=sys.stderr)
    return planned


def moe_cpu_layers(value: str, model: Any) -> int | None:
    """``--moe-cpu N|all|auto`` as ChatOverrides wants it: a layer count, None for the advisor's
    choice. A dense model has no experts to place: any value but auto is refused."""
    if value == "auto":
        return None
    if not model.is_moe:
        raise TailorError(f"--moe-cpu {value}: {model.name} is not a mixture-of-experts model.")
    if value == "all":
        return int(model.n_layer)
    if value.isdigit():
        return min(int(value), int(model.n_layer))
    raise TailorError(f"--moe-cpu {value}: give a number of layers, all or auto.")


def cmd_chat(args: argparse.Namespace) -> int:
    from app.engine import protocol as P
    from app.engine.chat import ChatSession, TemplateFallback, Trimmed
    from app.engine.client import EngineClient

    planned = chat_plan(args)
    load, plan = P.Load.from_plan(planned, n_threads=args.threads or 0), planned.to_record()
    sampling = P.Sampling(temperature=args.temperature, max_tokens=args.max_tokens, top_k=args.top_k,
                          top_p=args.top_p, min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                          seed=args.seed if args.seed is not None else -1, stop=tuple(args.stop or ()))  # fmt: skip
    with (
        EngineClient() as client,
        open_store() as store,
        ChatSession(
            client, store, load, system_prompt=args.system or "", sampling=sampling, plan=plan
        ) as session,
    ):

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
        experts = f" (experts of {load.moe_cpu_layers} in RAM)" if load.moe_cpu_layers else ""
        print(f"{Path(load.model_path).name}: {loaded.n_ctx:,}-token context, {load.n_gpu_layers} GPU layers{experts}, "
              f"loaded in {loaded.load_s:.1f} s. {template_note}")  # fmt: skip
        print("Type a message. /regen answers again, /edit TEXT rewrites your last message, /export prints "
              "the chat as Markdown. Ctrl+C stops an answer; Ctrl+C at the prompt (or Ctrl+D) exits.")  # fmt: skip
        if isinstance(sys.stdin, io.TextIOWrapper):  # bytes that are not UTF-8 become U+FFFD, not a crash
            sys.stdin.reconfigure(errors="replace")
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
            rid = session.new_request_id()  # Ctrl+C names this answer, wherever it is
            if text == "/regen":
                gen = session.regenerate(request_id=rid)
            elif text.startswith("/edit "):
                users = [m for m in store.thread(session.conversation_id) if m.role == "user"]
                if not users:
                    print("Nothing to edit yet.")
                    continue
                gen = session.edit(users[-1].id, text[len("/edit ") :], request_id=rid)
            else:
                gen = session.send(text, request_id=rid)
            done = None
            with ctrl_c_calls(lambda rid=rid: session.cancel(rid)):  # Ctrl+C stops this answer only
                for ev in gen:
                    if isinstance(ev, Trimmed):
                        print(f"[left out {ev.n_messages} older messages to fit the context]")
                    elif isinstance(ev, TemplateFallback):
                        print(f"[{ev.sentence}]")
                    elif isinstance(ev, P.TokenChunk):
                        print(ev.text, end="", flush=True)
                    else:
                        done = ev
            if done is not None:
                predicted = plan["predicted"].get("ram_bytes") if plan.get("predicted") else None
                pred = f" (predicted {format_bytes(predicted)})" if predicted else ""
                speed = "—" if done.gen_tok_s is None else f"{done.gen_tok_s:.1f}"
                ms = session.first_token_ms  # the figure stored with the answer, as the window shows
                first = "—" if ms is None else f"{ms:.0f}"
                print(f"\n[{done.n_gen_tokens} tokens, {speed} tok/s, first token after "
                      f"{first} ms, model process {_size(_peak_rss(session))} RAM{pred}"
                      f"{', stopped' if done.stop_reason == 'cancelled' else ''}]")  # fmt: skip


def _peak_rss(session: Any) -> int | None:
    """The model process's peak RSS during the last answer; None if it was stopped before it began."""
    monitor = getattr(session, "monitor", None)
    return monitor.peak.child_rss_bytes if monitor is not None else None


def _size(n: int | None) -> str:
    """A measured size, or "—" when it could not be measured (never 0)."""
    return "—" if n is None else format_bytes(n)


def _chat_once(session: Any, prompt: str, loaded: Any, template_note: str, plan: dict[str, Any], *,
               as_json: bool) -> int:  # fmt: skip
    from app.engine import protocol as P
    from app.engine.chat import TemplateFallback

    text, done = [], None
    for ev in session.send(prompt):
        if isinstance(ev, P.TokenChunk):
            text.append(ev.text)
            if not as_json:
                print(ev.text, end="", flush=True)
        elif isinstance(ev, TemplateFallback):
            template_note = ev.sentence
            if not as_json:
                print(f"tailorlm: {ev.sentence}", file=sys.stderr)
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
                "first_token_ms": session.first_token_ms,  # from the app's side: what is stored and shown
                "measured_rss_bytes": session.monitor.peak.child_rss_bytes,
                "measured_vram_bytes": session.monitor.peak.child_vram_bytes,
                "load_peak_rss_bytes": session.load_peak.child_rss_bytes},
            "conversation_id": session.conversation_id,
        }  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        print()
    return 0


def open_store() -> Any:
    """The chat store; if opening it moved a damaged file aside, the user is told where it went."""
    from app.core.chat.store import ChatStore

    store = ChatStore()
    if store.recovery_notice is not None:
        print(f"tailorlm: {store.recovery_notice.user_message()}", file=sys.stderr)
    return store


def cmd_chats(args: argparse.Namespace) -> int:
    with open_store() as store:
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


def add_plan_flags(p: Any) -> None:
    """The flags that shape a model's load plan, shared by ``chat`` and ``serve``."""
    p.add_argument("--ctx", type=int, metavar="N",
                   help=f"context length (default {DEFAULT_CTX}, at most the model's own)")  # fmt: skip
    p.add_argument("--ngl", default="auto", metavar="N|auto", help="GPU layers; auto = the advisor's plan")
    p.add_argument(
        "--moe-cpu", default="auto", metavar="N|all|auto",
        help="MoE models: keep the experts of the first N layers (or all) in RAM, the rest on the GPU; "
        "auto = the advisor's fastest plan that fits",
    )  # fmt: skip
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument("--kv-type", default="F16", choices=KV_TYPES, metavar="TYPE",
                   help="KV cache type, K and V (default F16; Q8_0 halves it)")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="load even when the plan does not fit this machine (says what will probably happen)")  # fmt: skip
    reserve_flag(p)
    hardware_flags(p)


def add_parsers(sub: Any) -> None:
    p_chat = sub.add_parser("chat", help="chat with a GGUF model in the terminal (streaming)")
    p_chat.add_argument("model", help="a .gguf file or a library id (`tailorlm list`)")
    add_plan_flags(p_chat)
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
    p_chat.set_defaults(func=cmd_chat)

    p_chats = sub.add_parser("chats", help="list saved conversations, or export one")
    p_chats.add_argument("--export", type=int, metavar="ID", help="print conversation ID")
    p_chats.add_argument("--format", choices=("md", "json"), default="md", help="export format (default md)")
    p_chats.add_argument("--limit", type=int, default=50)
    p_chats.add_argument("--json", action="store_true", help="machine-readable list")
    p_chats.set_defaults(func=cmd_chats)

"""``tailorlm worker``: lend this machine's memory (and cores, or GPU) to a TailorLM on another
machine, over llama.cpp's RPC backend (:mod:`app.engine.rpc_worker`).

Typical use, two machines on a home network, with an SSH tunnel so nothing listens beyond loopback::

    desktop$ tailorlm worker --mem 24GB                    # 127.0.0.1:50052
    laptop$  ssh -N -L 50052:127.0.0.1:50052 desktop &     # the tunnel
    laptop$  tailorlm chat MODEL --workers 127.0.0.1:50052
"""

from __future__ import annotations

import argparse
import sys

from app.core.errors import WorkerError
from app.core.machine.workers import DEFAULT_PORT, Endpoint
from app.core.units import parse_size

INSECURE_WARNING = (
    "WARNING: the worker listens on {host}, beyond this machine. llama.cpp's RPC protocol has no "
    "authentication and no encryption: anyone who can reach {host}:{port} can use this machine's "
    "memory and cores and send it data. Use it only on a network you trust, or keep the default "
    "(127.0.0.1) and reach it through an SSH tunnel (see the README)."
)


def cmd_worker(args: argparse.Namespace) -> int:
    from app.engine.rpc_worker import WorkerOptions, serve

    if not Endpoint(args.host, args.port).loopback:
        if not args.allow_network:
            raise WorkerError(
                f"The worker would listen on {args.host}, beyond this machine, and llama.cpp's RPC has "
                "no authentication.",
                hint="Add --allow-network if this network is trusted, or keep 127.0.0.1 and use an SSH tunnel.",
            )
        print(INSECURE_WARNING.format(host=args.host, port=args.port), file=sys.stderr, flush=True)
    mem = parse_size(args.mem) if args.mem else None
    if mem is not None and mem <= 0:
        raise WorkerError("--mem must be more than zero.")
    serve(WorkerOptions(host=args.host, port=args.port, mem_bytes=mem, threads=args.threads,
                        device=args.device, cache_dir=args.cache_dir),
          announce=lambda line: print(line, flush=True))  # fmt: skip
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "worker",
        help="lend this machine's memory to a TailorLM elsewhere (llama.cpp RPC)",
        description="Serve this machine's CPU (or first GPU) to other TailorLM or llama.cpp processes "
        "over llama.cpp's RPC backend, so a model too big for one machine runs across several. "
        "The protocol is unauthenticated: by default it listens on 127.0.0.1 only.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("--mem", metavar="SIZE", help="most memory clients may use on the CPU device, e.g. 8GB")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: physical cores)")
    p.add_argument(
        "--device", default="", help="ggml device to lend, e.g. CUDA0 (default: first GPU, else CPU)"
    )
    p.add_argument("--cache-dir", help="keep received weights here by hash, so a reload sends less")
    p.add_argument("--allow-network", action="store_true",
                   help="required to listen beyond loopback; the protocol has no authentication")  # fmt: skip
    p.set_defaults(func=cmd_worker)

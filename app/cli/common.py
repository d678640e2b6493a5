"""What several commands share: the machine (with ``--ram``/``--vram`` what-ifs), the budget,
models named by path or library id, and the hardware flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.core.errors import TailorError
from app.core.units import parse_size


def hardware_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ram", metavar="SIZE", help="plan for this much RAM instead (e.g. 16GB)")
    p.add_argument("--vram", metavar="SIZE", help="plan for a GPU with this much VRAM (e.g. 8GB)")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the memory-bandwidth measurement")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--workers", metavar="HOST:PORT,…",
                   help="also plan over these workers (`tailorlm worker` on other machines)")  # fmt: skip


def workers_of(args: argparse.Namespace) -> tuple[Any, ...]:
    """The ``--workers`` as they answer now (asked once per command)."""
    if not getattr(args, "workers", None):
        return ()
    if getattr(args, "_workers", None) is None:
        from app.core.machine.workers import parse_endpoints, probe_workers

        args._workers = probe_workers(parse_endpoints(args.workers))
    return tuple(args._workers)


def reserve_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reserve", metavar="SIZE", help="RAM to keep free for the system (default 1GiB)")


def machine_profile(args: argparse.Namespace) -> Any:
    from app.core.machine.hardware import apply_overrides, detect_machine

    profile = detect_machine(measure_bandwidth=not getattr(args, "no_bandwidth", False))
    changes: dict[str, int] = {}
    if getattr(args, "ram", None):
        changes["ram_bytes"] = parse_size(args.ram)
    if getattr(args, "vram", None):
        changes["vram_bytes"] = parse_size(args.vram)
    return apply_overrides(profile, **changes) if changes else profile


def budget_of(args: argparse.Namespace, profile: Any | None = None, *, workers: bool = True) -> Any:
    """This machine's budget for ``args`` (``--ram``/``--vram``/``--reserve``), with the ``--workers``
    that answer unless ``workers`` is False (what this machine runs alone)."""
    from app.core.advice.recommend import DEFAULT_RAM_RESERVE_BYTES, budget_from_profile
    from app.core.advice.speed_calibration import calibrated, calibration_for

    reserve = parse_size(args.reserve) if getattr(args, "reserve", None) else DEFAULT_RAM_RESERVE_BYTES
    profile = profile or machine_profile(args)
    # speeds as this machine's benchmark runs measured them (`tailorlm bench`), once there are any
    budget = calibrated(budget_from_profile(profile, ram_reserve_bytes=reserve), calibration_for(profile))
    lent = workers_of(args) if workers else ()
    if not lent:
        return budget
    from app.core.advice.pooling import with_workers
    from app.core.errors import WorkerError

    if not getattr(profile.offload, "rpc", False):
        raise WorkerError("This llama.cpp build has no RPC backend, so it cannot use workers.",
                          hint='Reinstall llama-cpp-python with CMAKE_ARGS="-DGGML_RPC=on" (scripts/run.sh does).')  # fmt: skip
    if not any(w.usable for w in lent):
        raise WorkerError("No worker can be used: " + "; ".join(f"{w.endpoint} {w.error}" for w in lent) + ".",
                          hint="Start `tailorlm worker` there, or leave out --workers.")  # fmt: skip
    for w in lent:
        if not w.usable:
            print(f"tailorlm: worker {w.endpoint} {w.error}; planning without it", file=sys.stderr)
    return with_workers(budget, lent)


def library_path(spec: str) -> Path | None:
    """The file behind a library id/name when ``spec`` is not a path on disk; None otherwise."""
    if Path(spec).expanduser().exists():
        return None
    from app.core.errors import ModelNotFoundError
    from app.core.library.registry import Library

    try:
        return Library().find(spec).path
    except ModelNotFoundError:
        return None


def gguf_path(spec: str) -> Path:
    """A local .gguf named by path or library id, or a one-line error."""
    path = library_path(spec) or Path(spec).expanduser()
    if not path.is_file():
        raise TailorError(f"{spec} is not a .gguf file.", hint="Give the path of a downloaded GGUF model.")
    return path


def any_model(spec: str) -> Any:
    """A ModelInfo from anything ``advise`` accepts, library ids included."""
    from app.core.model.source import load_model

    local = library_path(spec)  # a library id, e.g. after `tailorlm pull`
    return load_model(str(local) if local else spec)


def fit_word(fits: str) -> str:
    return {"gpu": "GPU", "partial": "GPU+CPU", "cpu": "CPU", "no": "no"}[fits]

"""Measured, not guessed (issue 19): what one run of a GGUF on a machine really needed and did.

A :class:`Profile` is one measured run: the settings (:class:`RunKey`), what happened
(:class:`Measured`) and which machine it ran on. The file is known by its header bytes and size
(:func:`file_identity`), so a renamed or moved copy matches; the machine by a hash of its hardware
(:func:`machine_fingerprint`), so a profile never names a path, a host or a user. Profiles are kept
in :class:`app.core.advice.profiles_db.ProfileStore` and travel as JSON (:func:`export_profiles`,
:func:`import_profiles`); an imported one only counts on the same hardware class (:func:`matching`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.advice.speed import GEN_TERMS, PROMPT_TERMS
from app.core.errors import NotAGGUFError, ProfileError
from app.core.machine.hardware import MachineProfile
from app.core.model.gguf_header import GGUF_MAGIC, FileSource
from app.core.units import GIB

if TYPE_CHECKING:
    from app.core.advice.profiles_db import ProfileStore

# How much of a file its identity reads. Finding the exact header end means parsing it: 24 ms for
# SmolLM2, 48 ms for Gemma 3's 262k-token vocabulary (measured here), over the 50 ms budget. Reading
# and hashing a fixed 8 MiB takes ~9 ms and covers every header we know (Gemma 3's is 6.2 MiB); a
# longer header is still told apart by its first 8 MiB and the file size.
IDENTITY_BYTES = 8 << 20
FORMAT = "tailorlm-profiles"
# 2 added Profile.kind, Profile.predicted and Measured's n_prompt/n_gen/reps, 3 Measured's
# others_cpu_share, 4 Predicted's cpu_compute; older versions still read (the fields they lack take
# their defaults)
VERSION = 4
READS = (1, 2, 3, 4)
MAX_IMPORT = 10_000  # entries in one import: twice the store's bound (profiles_db.MAX_PROFILES)
OUTCOMES = ("ok", "out_of_memory", "crash")
SOURCES = ("here", "imported")
# What measured it: a chat answer, a batch of the server's answers (their medians), a benchmark run
# (`tailorlm bench`: a full-size prompt and generation at a known depth, repeated), or a load that
# failed before any answer.
KINDS = ("answer", "server", "bench", "load")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOKEN = re.compile(r"[A-Za-z0-9_.+-]{1,32}")  # quant and KV type names: "Q4_K_M", "q8_0", "BF16"
_WHEN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00")  # what utc_now() writes
_PATH_LIKE = re.compile(r"^(/|~|\.{1,2}/|[A-Za-z]:)|\\")  # absolute, home, relative or Windows
_TEXT_MAX = 256  # model names: the longest real ones are under 100 characters
_CLASS_MAX = 1024  # a hardware class: the CPU and up to ~16 GPUs, ~60 characters each
_UINT32_MAX = (1 << 32) - 1  # llama_context_params.n_ctx is a uint32_t
_LAYERS_MAX = 65_536  # no model has a tenth as many; -1 is llama.cpp's "all layers"
_THREADS_MAX = 4_096
_BYTES_MAX = 1 << 60  # 1 EiB: larger than any machine's memory, small enough to be a typo


@functools.cache
def llama_cpp_version() -> str:
    """The llama.cpp that runs here, as :attr:`Profile.llama_cpp` names it (read once per process)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"llama-cpp-python {version('llama-cpp-python')}"
    except PackageNotFoundError:
        return "unknown"


def utc_now() -> str:
    """Now, as :attr:`Measured.when` holds it (fixed width, so text order is time order)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _check(ok: bool, field: str, why: str) -> None:
    if not ok:
        raise ProfileError(f"{field} {why}.")


def _check_text(value: str, field: str, *, max_len: int = _TEXT_MAX) -> None:
    _check(0 < len(value) <= max_len, field, f"must have 1 to {max_len} characters")
    _check(value.isprintable(), field, "must not hold control characters")
    _check(_PATH_LIKE.search(value) is None, field, "must not be a path")


@dataclass(frozen=True)
class RunKey:
    """What was run: the file and the settings that change its memory and speed."""

    file_id: str  # file_identity(): the header bytes and the size, not the path
    quant: str
    n_ctx: int
    type_k: str
    type_v: str
    n_gpu_layers: int  # llama.cpp's: -1 or n_layer + 1 is everything
    moe_cpu_layers: int
    n_threads: int
    flash_attn: bool

    def __post_init__(self) -> None:
        _check(_HEX64.fullmatch(self.file_id) is not None, "key.file_id", "must be 64 hex digits")
        for name in ("quant", "type_k", "type_v"):
            _check(_TOKEN.fullmatch(getattr(self, name)) is not None, f"key.{name}", "is not a type name")
        _check(1 <= self.n_ctx <= _UINT32_MAX, "key.n_ctx", f"must be 1 to {_UINT32_MAX}")
        _check(-1 <= self.n_gpu_layers <= _LAYERS_MAX, "key.n_gpu_layers", f"must be -1 to {_LAYERS_MAX}")
        _check(0 <= self.moe_cpu_layers <= _LAYERS_MAX, "key.moe_cpu_layers", f"must be 0 to {_LAYERS_MAX}")
        _check(1 <= self.n_threads <= _THREADS_MAX, "key.n_threads", f"must be 1 to {_THREADS_MAX}")


@dataclass(frozen=True)
class Measured:
    """What happened. A figure that was not measured (a crash has no speed) is None, never 0."""

    outcome: str  # one of OUTCOMES
    peak_ram_bytes: int | None
    peak_vram_bytes: int | None
    load_s: float | None
    gen_tok_s: float | None
    prompt_tok_s: float | None
    depth: int | None  # tokens in the context when gen_tok_s was measured
    when: str  # ISO 8601 UTC, as utc_now() writes it
    n_prompt: int | None = None  # tokens prompt_tok_s was measured on
    n_gen: int | None = None  # tokens gen_tok_s was measured on
    reps: int | None = None  # a benchmark's repetitions (the speeds are their medians)
    others_cpu_share: float | None = None  # other programs' share of the CPUs while it measured

    def __post_init__(self) -> None:
        _check(self.outcome in OUTCOMES, "measured.outcome", f"must be one of {', '.join(OUTCOMES)}")
        for name in ("n_prompt", "n_gen", "reps"):
            value = getattr(self, name)
            _check(value is None or 0 <= value <= _UINT32_MAX, f"measured.{name}", "is out of range")
        share = self.others_cpu_share
        _check(share is None or (math.isfinite(share) and 0 <= share <= 1), "measured.others_cpu_share",
               "must be from 0 to 1")  # fmt: skip
        for name in ("peak_ram_bytes", "peak_vram_bytes"):
            value = getattr(self, name)
            _check(value is None or 0 <= value <= _BYTES_MAX, f"measured.{name}", "must be 0 to 1 EiB")
        for name in ("load_s", "gen_tok_s", "prompt_tok_s"):
            value = getattr(self, name)
            ok = value is None or (math.isfinite(value) and 0 <= value <= 1e9)
            _check(ok, f"measured.{name}", "must be a finite number from 0 to 1e9")
        _check(self.depth is None or 0 <= self.depth <= _UINT32_MAX, "measured.depth", "is out of range")
        _check(_WHEN.fullmatch(self.when) is not None, "measured.when", "must be an ISO 8601 UTC time")
        try:
            datetime.fromisoformat(self.when)
        except ValueError:
            raise ProfileError(f"measured.when is not a real time ({self.when}).") from None


@dataclass(frozen=True)
class Predicted:
    """What the advisor predicted for the run when it was recorded, with the speed model's terms at
    the measured depth (seconds per token, uncalibrated): a run's measurement against these is what
    calibrates this machine's speed model and corrects the plans near it."""

    speed_model: int  # app.core.advice.speed.SPEED_MODEL_VERSION that made the terms
    ram_bytes: int
    vram_bytes: int
    tok_s: float
    prompt_tok_s: float
    cpu_bytes: float
    cpu_fixed: float
    gpu_bytes: float
    gpu_fixed: float
    cpu_prompt: float
    gpu_prompt: float
    cpu_compute: float = 0.0  # speed model 3 on; before, the CPU's compute was in its bytes and fixed

    def __post_init__(self) -> None:
        _check(0 <= self.speed_model <= 1_000, "predicted.speed_model", "is out of range")
        for name in ("ram_bytes", "vram_bytes"):
            _check(0 <= getattr(self, name) <= _BYTES_MAX, f"predicted.{name}", "must be 0 to 1 EiB")
        for f in dataclasses.fields(self)[3:]:
            value = getattr(self, f.name)
            _check(
                math.isfinite(value) and 0 <= value <= 1e9,
                f"predicted.{f.name}",
                "must be a finite number from 0 to 1e9",
            )

    def terms(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in (*GEN_TERMS, *PROMPT_TERMS)}


@dataclass(frozen=True)
class Profile:
    """One measured run of ``key`` on one machine."""

    key: RunKey
    measured: Measured
    machine_id: str  # machine_fingerprint()[0]
    hardware_class: str  # machine_fingerprint()[1]
    llama_cpp: str  # the llama.cpp (or llama-cpp-python) version that ran it
    source: str  # "here": measured on this machine; "imported": from someone's export
    model_name: str  # the GGUF's general.name or the catalog name; never a path
    kind: str = "answer"  # one of KINDS
    predicted: Predicted | None = None  # None: recorded without a prediction (version 1, a failed load)

    def __post_init__(self) -> None:
        _check(_HEX64.fullmatch(self.machine_id) is not None, "machine_id", "must be 64 hex digits")
        _check(self.kind in KINDS, "kind", f"must be one of {', '.join(KINDS)}")
        _check_text(self.hardware_class, "hardware_class", max_len=_CLASS_MAX)
        _check_text(self.llama_cpp, "llama_cpp", max_len=64)
        _check(self.source in SOURCES, "source", f"must be one of {', '.join(SOURCES)}")
        _check_text(self.model_name, "model_name")


def settings_key(
    quant: str, n_ctx: int, type_k: str, n_gpu_layers: int, moe_cpu_layers: int
) -> tuple[str, int, str, int, int]:
    """What makes a run the run of an advisor's plan: the plan's own settings. Threads and flash
    attention are left out: the engine picks them for a plan, whatever they were."""
    return quant.upper(), n_ctx, type_k.upper(), n_gpu_layers, moe_cpu_layers


def run_settings(profile: Profile) -> tuple[str, int, str, int, int]:
    k = profile.key
    return settings_key(k.quant, k.n_ctx, k.type_k, k.n_gpu_layers, k.moe_cpu_layers)


def failed_runs(profiles: Iterable[Profile]) -> dict[tuple[str, int, str, int, int], str]:
    """Plan settings whose newest run here failed → why, in words ("it ran out of memory here on
    2026-12-03"); a later successful run of the same settings clears a failure."""
    newest: dict[tuple[str, int, str, int, int], Profile] = {}
    for p in profiles:
        key = run_settings(p)
        if key not in newest or p.measured.when > newest[key].measured.when:
            newest[key] = p
    words = {"out_of_memory": "it ran out of memory", "crash": "the model process crashed"}
    return {k: f"{words[p.measured.outcome]} here on {p.measured.when[:10]}"
            for k, p in newest.items() if p.measured.outcome != "ok"}  # fmt: skip


def file_identity(path: Path) -> str:
    """SHA-256 of the file's first IDENTITY_BYTES and its size: the same for a renamed or moved copy,
    different for another file. Never reads the weights past that; raises ``ModelReadError``."""
    with FileSource(path) as src:
        size = src.size or 0
        head = src.read(0, min(size, IDENTITY_BYTES))
    if head[:4] != GGUF_MAGIC:
        raise NotAGGUFError(f"{path.name} is not a GGUF file, so no run of it can be measured.")
    digest = hashlib.sha256(head)
    digest.update(size.to_bytes(8, "little"))
    return digest.hexdigest()


def _best_isa(isa: Iterable[str]) -> str:
    """The widest SIMD level of llama.cpp's ISA names (app.core.machine.cpu): what decides speed."""
    flags = set(isa)
    for level, flag in (("avx512", "AVX512F"), ("avx2", "AVX2"), ("avx", "AVX"), ("neon", "NEON")):
        if flag in flags:
            return level
    return "none"


def _plain(text: str) -> str:
    """A detected name made safe for the class: one line, no separators, bounded."""
    return " ".join(text.replace("|", " ").replace("\\", " ").split())[:80] or "unknown"


def machine_fingerprint(machine: MachineProfile) -> tuple[str, str]:
    """``(machine_id, hardware_class)`` of a detected machine.

    machine_id hashes everything that changes a measurement here (CPU, cores, ISA, RAM in GiB, each
    GPU's name, VRAM and driver); hardware_class is readable and coarse — CPU, cores, best ISA level,
    GPU names and VRAM in GiB, no driver — for matching imported profiles. Neither holds a path, a
    host name or a user name: only the hardware's own names and sizes go in.
    """
    cpu = machine.cpu
    parts: list[object] = [
        cpu.model,
        cpu.physical_cores,
        sorted(cpu.isa),
        round(machine.ram_total_bytes / GIB),
    ]
    parts += [[gpu.name, gpu.vram_total_bytes, gpu.driver_version] for gpu in machine.gpus]
    machine_id = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    classes = [f"cpu:{_plain(cpu.model)}/{cpu.physical_cores}c/{_best_isa(cpu.isa)}"]
    for gpu in machine.gpus:
        vram = "" if gpu.vram_total_bytes is None else f"/{round(gpu.vram_total_bytes / GIB)}GiB"
        classes.append(f"gpu:{_plain(gpu.name)}{vram}")
    return machine_id, "|".join(classes)[:_CLASS_MAX]


def matches(profile: Profile, *, machine_id: str, hardware_class: str | None) -> bool:
    """Whether a profile counts for this machine: one measured here by its machine_id, an imported
    one only by its hardware class (another machine's driver, OS or load differ)."""
    if profile.source == "here":
        return profile.machine_id == machine_id
    return hardware_class is not None and profile.hardware_class == hardware_class


def matching(profiles: Iterable[Profile], *, machine_id: str, hardware_class: str | None) -> list[Profile]:
    """The profiles that count for this machine (see :func:`matches`), in their order."""
    return [p for p in profiles if matches(p, machine_id=machine_id, hardware_class=hardware_class)]


# Export and import ---------------------------------------------------------------------------


def export_profiles(profiles: Iterable[Profile]) -> dict[str, Any]:
    """JSON-ready: only what the dataclasses hold, so no path, host or user name."""
    return {"format": FORMAT, "version": VERSION, "profiles": [dataclasses.asdict(p) for p in profiles]}


def import_profiles(data: object, store: ProfileStore, *, now: datetime | None = None) -> int:
    """Check every entry of an export, then keep them all as ``source="imported"``; returns how many
    were new (importing the same file again adds none). Nothing is kept when any entry is wrong:
    ProfileError names the first one and its field."""
    profiles = parse_export(data, now=now)
    return store.record_many(profiles)


def parse_export(data: object, *, now: datetime | None = None) -> list[Profile]:
    """The profiles of an export (see :func:`import_profiles`), checked, marked imported."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ProfileError(
            "This is not a TailorLM profiles file.", hint="Choose a file made by 'Export profiles'."
        )
    if data.get("version") not in READS:
        raise ProfileError(
            f"This profiles file has version {repr(data.get('version'))[:20]}; this TailorLM reads version {VERSION}.",
            hint="Export the profiles again with this version of TailorLM.",
        )
    _unknown(data, {"format", "version", "profiles"}, "the file")
    entries = data.get("profiles")
    if not isinstance(entries, list):
        raise ProfileError("The profiles file has no list of profiles.")
    if len(entries) > MAX_IMPORT:
        raise ProfileError(
            f"The profiles file holds {len(entries):,} profiles; at most {MAX_IMPORT:,} are read."
        )
    latest = (now or datetime.now(timezone.utc)) + timedelta(days=1)  # a day for clock skew
    profiles = []
    for i, entry in enumerate(entries):
        try:
            profile = _profile(entry)
            if datetime.fromisoformat(profile.measured.when) > latest:
                raise ProfileError(f"measured.when is in the future ({profile.measured.when}).")
        except ProfileError as exc:
            raise ProfileError(f"Profile {i + 1} of the file is not valid: {exc}", hint=exc.hint) from None
        profiles.append(profile)
    return profiles


def _profile(entry: object) -> Profile:
    fields = _fields(Profile, entry, "")
    fields["key"] = RunKey(**_fields(RunKey, fields["key"], "key."))
    fields["measured"] = Measured(**_fields(Measured, fields["measured"], "measured."))
    if fields.get("predicted") is not None:
        fields["predicted"] = Predicted(**_fields(Predicted, fields["predicted"], "predicted."))
    fields["source"] = "imported"  # whatever the file says: it was not measured here
    return Profile(**fields)


def _fields(cls: type, entry: object, prefix: str) -> dict[str, Any]:
    """The fields of ``cls`` from a JSON object, each of its declared type (no bool for a number)."""
    if not isinstance(entry, Mapping):
        raise ProfileError(f"{prefix.rstrip('.') or 'the entry'} must be an object.")
    hints = typing.get_type_hints(cls)
    optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    _unknown(entry, set(hints), prefix.rstrip(".") or "the entry")
    out: dict[str, Any] = {}
    for name, hint in hints.items():
        if name not in entry:
            if name in optional:
                continue  # a field a version 1 file did not have: its default
            raise ProfileError(f"{prefix}{name} is missing.")
        value = entry[name]
        allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if any(dataclasses.is_dataclass(kind) for kind in allowed) and value is not None:
            out[name] = value  # a nested record, checked by the caller
            continue
        if isinstance(value, int) and not isinstance(value, bool) and float in allowed:
            value = float(value)  # JSON writes 12.0 as 12
        ok = any(
            value is None if kind is type(None) else type(value) is kind  # exact: bool is not an int
            for kind in allowed
        )
        if not ok:
            raise ProfileError(f"{prefix}{name} has the wrong type ({type(value).__name__}).")
        out[name] = value
    return out


def _unknown(entry: Mapping[Any, Any], known: set[str], where: str) -> None:
    extra = sorted(str(k)[:40] for k in entry if k not in known)
    if extra:
        raise ProfileError(f"{where} has unknown fields: {', '.join(extra[:5])}.")

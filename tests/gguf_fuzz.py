"""A seeded mutator over GGUF headers, with llama.cpp's own header parser as the referee (issue 13).

``run_fuzz`` mutates real headers (SmolLM2, Gemma-3-270M), the same headers with their vocabulary
cut to 128 tokens (the real metadata and tensor table, ~50x faster to parse) and small synthetic
ones (a dense and a mixture-of-experts llama); it reads each file the way the app does —
``read_gguf_file``, then ``model_from_gguf`` and, for a sample of what is accepted, a plan — and
sorts what happens: accepted, refused with a ``TailorError`` (clean), anything else (a crash), or
over the time limit. Every case is also given to ``gguf_init_from_file`` from the libggml-base that
llama-cpp-python ships, in a child process (a llama.cpp abort cannot take the caller down; the rest
of the batch runs in a fresh one), and a header TailorLM accepts must be one llama.cpp accepts.

Each case is written as its mutated header followed by a sparse data section of the size the
header describes (no data bytes are written or read). That keeps the comparison meaningful:
with ``ctx = NULL`` llama.cpp reads only the header and never checks that the data fits in the
file, while TailorLM refuses a truncated file, so only a full-size file can be accepted by both.

The header model and its writer are tests/gguf_doc.py; the referee, tests/gguf_referee.py.
Replay one case: ``write_case(make_case(base_docs(...), seed, index), path)``.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import resource
import signal
import statistics
import struct
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.gguf_doc import (
    ARRAY,
    BOOL,
    F32,
    F64,
    I32,
    INT_TYPES,
    KV,
    MAX_FILE_BYTES,
    STRING,
    U8,
    U16,
    U32,
    U64,
    Doc,
    Field,
    Row,
    cut_vocabulary,
    encode,
    pad,
    read_doc,
    relayout,
    tiny_doc,
    value,
    write_sparse,
)
from tests.gguf_referee import Verdict, referee

CASE_LIMIT_S = 5.0  # issue 13: no run over 5 s
MEMORY_CAP_BYTES = 3 << 30  # more address space than the reader may take on top of what is mapped
BATCH = 1000  # cases per referee child
BOUNDARY = (0, 1, 2, 3, 4, 31, 32, 255, 256, 1 << 16, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32,
            (1 << 63) - 1, 1 << 63, (1 << 64) - 1, -1, -2)  # fmt: skip


def base_docs(smollm2: Path, gemma3: Path) -> dict[str, Doc]:
    smol, gemma = read_doc(smollm2), read_doc(gemma3)
    return {"smollm2": smol, "gemma3": gemma,
            "smollm2-cut": cut_vocabulary(smol, CUT_VOCAB), "gemma3-cut": cut_vocabulary(gemma, CUT_VOCAB),
            "tiny": tiny_doc(moe=False), "tiny-moe": tiny_doc(moe=True)}  # fmt: skip


CUT_VOCAB = 128  # tokens kept in the "-cut" bases: the tokenizer arrays dominate a header's parse time
# Which base a case mutates: the full real headers take 50-110 ms to parse, the rest ~1 ms.
BASE_WEIGHTS = {"smollm2": 1.0, "gemma3": 0.3, "smollm2-cut": 34, "gemma3-cut": 34, "tiny": 12, "tiny-moe": 18}  # fmt: skip


# --- mutations ------------------------------------------------------------------------------------


def _boundary(rng: random.Random) -> int:
    return rng.choice(BOUNDARY) if rng.random() < 0.8 else rng.randrange(1 << rng.choice((8, 16, 32, 64)))


def _hostile_value(rng: random.Random, n_layer: int) -> tuple[int, bytes]:
    """A type and value to put where the app expects a count."""
    pick = rng.randrange(9)
    if pick <= 2:
        vtype = rng.choice(INT_TYPES)
        return vtype, value(vtype, _boundary(rng))
    if pick == 3:
        vtype = rng.choice((F32, F64))
        return vtype, value(vtype, rng.choice((math.nan, math.inf, -math.inf, 1.5, -0.0, 1e30, 64.0)))
    if pick == 4:
        return STRING, value(STRING, rng.choice(("12", "", "x" * 100, "nan", "\xff")))
    if pick == 5:
        return BOOL, value(BOOL, rng.random() < 0.5)
    if pick == 6:  # a per-layer array of the right or a wrong length
        length = rng.choice((n_layer, n_layer + 1, 0, 1, max(0, n_layer - 1)))
        item = rng.choice((U32, I32, F32, U64))
        items = [rng.choice((0, 1, 4, 64, 1 << 20)) if item != F32 else math.nan for _ in range(length)]
        return ARRAY, value(ARRAY, items, item)
    if pick == 7:
        return ARRAY, value(ARRAY, ["a", "b"], STRING)
    return U32, value(U32, rng.choice((0, 1, 1_000_000, (1 << 32) - 1, 7)))


SEMANTIC_KEYS = ("block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
                 "context_length", "feed_forward_length", "attention.key_length", "attention.value_length",
                 "vocab_size", "expert_count", "expert_used_count", "expert_feed_forward_length",
                 "attention.sliding_window", "attention.sliding_window_pattern")  # fmt: skip
GENERAL_KEYS = ("general.architecture", "general.alignment", "general.file_type", "general.name",
                "general.type", "split.count", "tokenizer.ggml.tokens", "tokenizer.ggml.model")  # fmt: skip


def _n_layer(doc: Doc) -> int:
    kv = doc.find(f"{doc.arch}.block_count")
    return struct.unpack("<I", kv.value)[0] if kv is not None and kv.vtype == U32 else 2


def _set(doc: Doc, key: str, vtype: int, raw: bytes, rng: random.Random) -> None:
    kv = doc.find(key)
    if kv is None:
        doc.kvs.insert(rng.randrange(len(doc.kvs) + 1), KV(key.encode(), vtype, raw))
    else:
        kv.vtype, kv.value = vtype, raw


def m_semantic(rng: random.Random, doc: Doc) -> None:
    key = rng.choice(SEMANTIC_KEYS + GENERAL_KEYS)
    key = (
        key if "." in key and key.split(".")[0] in ("general", "split", "tokenizer") else f"{doc.arch}.{key}"
    )
    vtype, raw = _hostile_value(rng, _n_layer(doc))
    _set(doc, key, vtype, raw, rng)


def m_alignment(rng: random.Random, doc: Doc) -> None:
    align = rng.choice((0, 1, 2, 3, 8, 16, 24, 31, 32, 64, 128, 4096, 1 << 20, 1 << 31, (1 << 32) - 1))
    vtype = U32 if rng.random() < 0.75 else rng.choice((U64, I32, U16, F32, STRING))
    _set(doc, "general.alignment", vtype, value(vtype, align), rng)
    if vtype == U32 and align and not align & (align - 1) and align <= 4096 and rng.random() < 0.7:
        doc.alignment = align
        relayout(doc)


def m_duplicate_key(rng: random.Random, doc: Doc) -> None:
    src = rng.choice(doc.kvs)
    kv = KV(src.key, src.vtype, src.value)
    if rng.random() < 0.5 and kv.vtype in INT_TYPES:
        kv.value = value(kv.vtype, _boundary(rng))
    doc.kvs.insert(rng.randrange(len(doc.kvs) + 1), kv)


def m_duplicate_tensor(rng: random.Random, doc: Doc) -> None:
    if rng.random() < 0.5:  # rename one tensor as another
        rng.choice(doc.rows).name = rng.choice(doc.rows).name
    else:
        r = rng.choice(doc.rows)
        doc.rows.insert(rng.randrange(len(doc.rows) + 1), Row(r.name, list(r.dims), r.ggml_type, r.offset))
    if rng.random() < 0.6:
        relayout(doc)


def m_drop(rng: random.Random, doc: Doc) -> None:
    if rng.random() < 0.5 and doc.kvs:
        doc.kvs.pop(rng.randrange(len(doc.kvs)))
    elif doc.rows:
        doc.rows.pop(rng.randrange(len(doc.rows)))
        if rng.random() < 0.6:
            relayout(doc)


def m_reorder(rng: random.Random, doc: Doc) -> None:
    i, j = rng.randrange(len(doc.rows)), rng.randrange(len(doc.rows))
    doc.rows[i], doc.rows[j] = doc.rows[j], doc.rows[i]
    if rng.random() < 0.4:
        relayout(doc)


def m_dims(rng: random.Random, doc: Doc) -> None:
    r = rng.choice(doc.rows)
    if rng.random() < 0.5:  # the number of dimensions: 0 (a scalar) to 6 (ggml has 4)
        n = rng.randrange(7)
        r.dims = (r.dims + [rng.choice((1, 2, 32, 256))] * 6)[:n]
    else:
        i = rng.randrange(len(r.dims)) if r.dims else 0
        new = rng.choice((0, 1, 2, 32, 33, 256, r.dims[i] * 2 if r.dims else 2, (1 << 63) - 1, 1 << 63,
                          (1 << 64) - 1, 1 << 32, 1 << 40))  # fmt: skip
        r.dims = [*r.dims[:i], new, *r.dims[i + 1 :]] if r.dims else [new]
    if rng.random() < 0.6:
        relayout(doc)


def m_tensor_type(rng: random.Random, doc: Doc) -> None:
    rng.choice(doc.rows).ggml_type = rng.choice((0, 1, 2, 4, 5, 8, 12, 14, 15, 16, 30, 31, 36, 39, 40, 41, 42,
                                                 43, 44, 255, (1 << 31), (1 << 32) - 1))  # fmt: skip
    if rng.random() < 0.6:
        relayout(doc)


def m_offset(rng: random.Random, doc: Doc) -> None:
    i = rng.randrange(len(doc.rows))
    r, prev = doc.rows[i], doc.rows[i - 1] if i else None
    r.offset = rng.choice((r.offset + 1, r.offset + doc.alignment, max(0, r.offset - doc.alignment),
                           prev.offset if prev else 0, r.offset + (1 << 40), _boundary(rng) & ((1 << 64) - 1)))  # fmt: skip


def m_nested(rng: random.Random, doc: Doc) -> None:
    depth = rng.choice((1, 2, 10, 1000, 100_000))
    raw = struct.pack("<IQ", ARRAY, 1) * (depth - 1) + struct.pack("<IQI", U32, 1, 7)
    kv = rng.choice(doc.kvs)
    kv.vtype, kv.value = ARRAY, raw


def m_names(rng: random.Random, doc: Doc) -> None:
    pick = rng.randrange(4)
    if pick == 0:
        rng.choice(doc.rows).name = rng.choice(
            (b"", b"x" * 63, b"x" * 64, b"blk.9999.attn_q.weight", b"\xff\xfe")
        )
    elif pick == 1:
        rng.choice(doc.kvs).key = rng.choice((b"", b"\xff\xfe", b"general.alignment", b"k" * 5000))
    elif pick == 2:
        doc.version = rng.choice((0, 1, 2, 4, 1 << 16, 0x03000000, (1 << 32) - 1))
    else:  # a string value that claims more than the file holds, or a huge real one
        kv = rng.choice([kv for kv in doc.kvs if kv.vtype == STRING] or doc.kvs)
        kv.vtype, kv.value = STRING, value(STRING, b"y" * rng.choice((0, 1, 70_000)))


def m_many(rng: random.Random, doc: Doc) -> None:
    """Thousands of tensors or keys: each must be refused or read fast."""
    n = rng.choice((2_000, 20_000))
    if rng.random() < 0.5:
        doc.rows += [Row(f"extra.{i}".encode(), [1], 0, 0) for i in range(n)]
        relayout(doc)
    else:
        doc.kvs += [KV(f"junk.{i}".encode(), U8, b"\0") for i in range(n)]


STRUCTURAL: dict[str, tuple[float, Callable[[random.Random, Doc], None]]] = {
    "semantic value": (30, m_semantic), "alignment": (8, m_alignment), "duplicate key": (5, m_duplicate_key),
    "duplicate tensor": (5, m_duplicate_tensor), "drop key/tensor": (5, m_drop), "reorder tensors": (4, m_reorder),
    "dims": (12, m_dims), "tensor type": (6, m_tensor_type), "tensor offset": (6, m_offset),
    "nested array": (3, m_nested), "names/version/strings": (6, m_names), "many rows": (0.3, m_many),
}  # fmt: skip


def _pick_field(rng: random.Random, fields: list[Field]) -> Field:
    # Most fields are dims and offsets; give every kind a fair chance.
    kind = rng.choice(sorted({f.kind for f in fields}))
    return rng.choice([f for f in fields if f.kind == kind])


def b_int_field(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    f = _pick_field(rng, fields)
    v = (
        _boundary(rng)
        if rng.random() < 0.8
        else int.from_bytes(data[f.offset : f.offset + f.width], "little") + rng.choice((-1, 1, 2))
    )
    data[f.offset : f.offset + f.width] = (v & ((1 << 8 * f.width) - 1)).to_bytes(f.width, "little")


def b_type_tag(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    tags = [f for f in fields if f.kind in ("value_type", "item_type", "ggml_type")]
    f = rng.choice(tags)
    data[f.offset : f.offset + 4] = struct.pack(
        "<I", rng.choice((*range(14), 43, 255, 1 << 31, (1 << 32) - 1))
    )


def b_count(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    f = rng.choice([f for f in fields if f.kind in ("n_tensors", "n_kv", "array_length", "n_dims")])
    old = int.from_bytes(data[f.offset : f.offset + f.width], "little")
    v = rng.choice((old + 1, old - 1, old * 2, 0, 1_000_000, 1 << 32, 1 << 63, (1 << 64) - 1))
    data[f.offset : f.offset + f.width] = (v & ((1 << 8 * f.width) - 1)).to_bytes(f.width, "little")


def _spot(rng: random.Random, data: bytearray, fields: list[Field]) -> int:
    if rng.random() < 0.5:
        return rng.randrange(len(data))
    f = rng.choice(fields)
    return min(len(data) - 1, max(0, f.offset + rng.randrange(-8, 16)))


def b_bitflip(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        data[_spot(rng, data, fields)] ^= 1 << rng.randrange(8)


def b_overwrite(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    i, n = _spot(rng, data, fields), rng.randrange(1, 17)
    fill = rng.choice((b"\0", b"\xff", None))
    data[i : i + n] = fill * n if fill else rng.randbytes(n)


def b_splice(rng: random.Random, data: bytearray, fields: list[Field]) -> None:
    i = _spot(rng, data, fields)
    if rng.random() < 0.5:
        data[i:i] = rng.randbytes(rng.randrange(1, 9))
    else:
        del data[i : i + rng.randrange(1, 9)]


BYTES: dict[str, tuple[float, Callable[[random.Random, bytearray, list[Field]], None]]] = {
    "int field": (30, b_int_field), "type tag": (10, b_type_tag), "count": (10, b_count),
    "bit flip": (20, b_bitflip), "overwrite": (10, b_overwrite), "insert/delete": (5, b_splice),
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    base: str
    mutations: tuple[str, ...]
    data: bytes
    size: int  # the file's size: the header, then a sparse data section (or less: truncated)


def make_case(bases: dict[str, Doc], seed: int, index: int) -> Case:
    """Case ``index`` of run ``seed``: the same bytes every time."""
    rng = random.Random(seed * 1_000_003 + index)
    base = rng.choices(list(BASE_WEIGHTS), weights=list(BASE_WEIGHTS.values()))[0]
    doc, names = bases[base].clone(), []
    n_struct, n_bytes = rng.choice(((1, 0), (1, 0), (2, 0), (0, 1), (0, 1), (0, 2), (1, 1), (0, 0)))
    for _ in range(n_struct):
        name = rng.choices(list(STRUCTURAL), weights=[w for w, _ in STRUCTURAL.values()])[0]
        STRUCTURAL[name][1](rng, doc)
        names.append(name)
    if n_struct:
        raw, fields = encode(doc, with_fields=n_bytes > 0)
    else:
        raw, fields = bases[base].encoded or encode(bases[base])
        bases[base].encoded = raw, fields
    data = bytearray(raw)
    for _ in range(n_bytes):
        name = rng.choices(list(BYTES), weights=[w for w, _ in BYTES.values()])[0]
        BYTES[name][1](rng, data, fields)
        names.append(name)
    size = pad(len(data), doc.alignment) + doc.data_bytes
    roll = rng.random()
    if roll < 0.06:  # cut anywhere: inside the header or inside the data
        size = (
            rng.randrange(min(len(data), size) + 1)
            if rng.random() < 0.7
            else rng.randrange(len(data), size + 1)
        )
        names.append("truncate")
    elif roll < 0.08:
        size += rng.choice((1, 4096))
        names.append("trailing bytes")
    if not names:
        names.append("none")
    size = min(size, MAX_FILE_BYTES)  # beyond: a truncated file, which llama.cpp (ctx = NULL) accepts
    return Case(base, tuple(names), bytes(data[:size]), size)


def write_case(case: Case, path: Path) -> Path:
    return write_sparse(path, case.data, case.size)


# --- running cases through TailorLM's reader ------------------------------------------------------


class CaseTimeout(BaseException):  # a BaseException: no `except Exception` under test swallows it
    """A case ran past ``CASE_LIMIT_S``."""


def _on_alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


@contextlib.contextmanager
def _memory_cap() -> Iterator[None]:
    """A MemoryError instead of the OOM killer, for a reader that sizes something from a count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmSize:"))  # fmt: skip
    cap = mapped + MEMORY_CAP_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Outcome:
    index: int
    case: Case
    stage: str  # "accepted" | "header refused" | "model refused" | "plan refused" | "crash" | "timeout"
    message: str
    seconds: float
    planned: bool = False

    @property
    def header_accepted(self) -> bool:
        return self.stage in ("accepted", "model refused", "plan refused") or (
            self.stage in ("crash", "timeout") and self.message.startswith("after the header:")
        )


def _budget(rng: random.Random) -> Any:
    from app.core.advice.recommend import Budget, GpuBudget

    gpus = (GpuBudget(name="fuzz GPU", free_bytes=rng.choice((1 << 30, 8 << 30)), bandwidth_bytes_s=300e9,
                      backend="cuda", unified=False),) if rng.random() < 0.5 else ()  # fmt: skip
    return Budget(ram_bytes=rng.choice((2 << 30, 16 << 30)), ram_bandwidth_bytes_s=20e9, gpus=gpus,
                  can_offload=bool(gpus), cpu_isa=("AVX2",))  # fmt: skip


def run_case(index: int, case: Case, path: Path, *, plan: bool) -> Outcome:
    """Read ``path`` as the app does; a plan too when ``plan`` and the model is accepted."""
    from app.core.advice.recommend import advise
    from app.core.errors import TailorError
    from app.core.model.gguf_header import read_gguf_file
    from app.core.model.source import model_from_gguf

    stage, message, prefix, planned = "header refused", "", "", False
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_LIMIT_S)
    start = time.perf_counter()
    try:
        read_gguf_file(path)
        stage, prefix = "model refused", "after the header: "
        model = model_from_gguf(path)
        stage = "plan refused"
        if plan:
            planned, rng = True, random.Random(index)
            advise(
                model,
                _budget(rng),
                n_ctx=rng.choice((512, 4096)),
                quants=[rng.choice(("Q4_K_M", "Q8_0", "Q2_K"))],
            )
        stage = "accepted"
    except TailorError as exc:
        message = f"{type(exc).__name__}: {exc}"
    except CaseTimeout:
        stage, message = "timeout", f"{prefix}over {CASE_LIMIT_S:.0f} s"
    except Exception as exc:  # the failures this suite exists to find
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        stage, message = "crash", f"{prefix}{type(exc).__name__} at {where}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(index, case, stage, message, time.perf_counter() - start, planned)


def _reason(message: str) -> str:
    """A refusal's message without its numbers and names, to count refusals by kind."""
    text = re.sub(r"'[^']*'", "'…'", message)
    text = re.sub(r"\d[\d,.]*", "N", text)
    return text[:110]


@dataclass
class FuzzReport:
    seed: int
    cases: int = 0
    seconds: float = 0.0
    stages: Counter[str] = field(default_factory=Counter)
    referee: Counter[str] = field(default_factory=Counter)
    stricter: Counter[str] = field(default_factory=Counter)  # why we refused what llama.cpp accepts
    bases: Counter[str] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    planned: int = 0
    max_case_s: float = 0.0
    slowest: str = ""
    case_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # crashes, timeouts, wrong acceptances

    @property
    def clean_errors(self) -> int:
        return sum(self.stages[s] for s in ("header refused", "model refused", "plan refused"))

    @property
    def crashes(self) -> int:
        return self.stages["crash"]

    @property
    def wrong_acceptances(self) -> int:
        return self.referee["TailorLM accepts, llama.cpp refuses"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "cases": self.cases, "seconds": round(self.seconds, 1),
            "clean_errors": self.clean_errors, "accepted": self.stages["accepted"],
            "header_accepted": self.referee["both accept"] + self.wrong_acceptances,
            "uncaught_exceptions": self.crashes, "over_5_s": self.stages["timeout"],
            "max_case_s": round(self.max_case_s, 3), "slowest_case": self.slowest,
            "median_case_ms": round(1000 * statistics.median(self.case_seconds or [0]), 2),
            "p99_case_ms": round(1000 * _p99(self.case_seconds), 1),
            "planned": self.planned, "stages": dict(self.stages), "referee": dict(self.referee),
            "refused_but_llama_cpp_accepts": dict(self.stricter.most_common(12)),
            "bases": dict(self.bases), "mutations": dict(self.mutations.most_common()),
            "failures": self.failures[:50],
        }  # fmt: skip

    def summary(self) -> str:
        r = self.referee
        return (f"{self.cases:,} cases in {self.seconds:.0f} s (seed {self.seed}): {self.clean_errors:,} clean errors, "
                f"{self.stages['accepted']:,} accepted ({self.planned:,} planned), {self.crashes} uncaught exceptions, "
                f"{self.stages['timeout']} over {CASE_LIMIT_S:.0f} s (slowest {self.max_case_s:.2f} s: {self.slowest}); "
                f"llama.cpp referee: {r['both accept']:,} both accept, {r['both refuse']:,} both refuse, "
                f"{r['TailorLM refuses, llama.cpp accepts']:,} refused by TailorLM only, "
                f"{self.wrong_acceptances} accepted by TailorLM only, {r['llama.cpp died']} llama.cpp aborts")  # fmt: skip


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[-1] if len(values) > 1 else (values or [0.0])[0]


def run_fuzz(bases: dict[str, Doc], *, seed: int, cases: int, plan_every: int = 1,
             on_batch: Callable[[FuzzReport], None] | None = None) -> FuzzReport:  # fmt: skip
    """``cases`` cases of run ``seed``; every ``plan_every``-th accepted model is also planned."""
    report = FuzzReport(seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gguf-fuzz-") as tmp, _memory_cap():
        for first in range(0, cases, BATCH):
            outcomes, paths = [], []
            for i in range(first, min(cases, first + BATCH)):
                case = make_case(bases, seed, i)
                path = write_case(case, Path(tmp) / f"case-{i:06d}.gguf")
                outcome = run_case(i, case, path, plan=report.stages["accepted"] % plan_every == 0)
                outcomes.append(outcome)
                paths.append(path)
                _count(report, outcome)
            for outcome, verdict in zip(outcomes, referee(paths), strict=True):
                _judge(report, outcome, verdict)
            for path in paths:
                path.unlink()
            report.seconds = time.perf_counter() - start
            if on_batch:
                on_batch(report)
    report.seconds = time.perf_counter() - start
    return report


def _label(outcome: Outcome) -> str:
    return f"case {outcome.index} ({outcome.case.base}: {', '.join(outcome.case.mutations)})"


def _count(report: FuzzReport, outcome: Outcome) -> None:
    report.cases += 1
    report.stages[outcome.stage] += 1
    report.bases[outcome.case.base] += 1
    report.mutations.update(outcome.case.mutations)
    report.planned += outcome.planned
    report.case_seconds.append(outcome.seconds)
    if outcome.seconds > report.max_case_s:
        report.max_case_s, report.slowest = outcome.seconds, _label(outcome)
    if outcome.stage in ("crash", "timeout"):
        report.failures.append(f"{_label(outcome)}: {outcome.message}")


def _judge(report: FuzzReport, outcome: Outcome, verdict: Verdict) -> None:
    ours = outcome.header_accepted
    if verdict.died:
        report.referee["llama.cpp died"] += 1
    if outcome.stage in ("crash", "timeout") and not ours:
        report.referee["TailorLM failed"] += 1  # counted among the failures already
    elif ours and verdict.accepted:
        report.referee["both accept"] += 1
    elif ours:
        report.referee["TailorLM accepts, llama.cpp refuses"] += 1
        report.failures.append(f"{_label(outcome)}: accepted, but llama.cpp says {verdict.why!r}")
    elif verdict.accepted:
        report.referee["TailorLM refuses, llama.cpp accepts"] += 1
        report.stricter[_reason(outcome.message)] += 1
    else:
        report.referee["both refuse"] += 1

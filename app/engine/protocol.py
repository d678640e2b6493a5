"""The typed messages between the app and its child processes: one JSON object per line.

The model process (:mod:`app.engine.worker`). Parent → child: :class:`Load`, :class:`Generate`,
:class:`Cancel`, :class:`Tokenize`, :class:`Stats`, :class:`Bench`, :class:`Unload`,
:class:`Shutdown`. Child → parent: :class:`LoadProgress`, :class:`Loaded`, :class:`TokenChunk`,
:class:`Done`, :class:`TokenCount`, :class:`StatsReport`, :class:`BenchProgress`,
:class:`BenchDone`, :class:`Failed`. Every request that can be cancelled carries the
``request_id`` the app chose for it before any work began, and a cancelled request always ends
with ``stop_reason="cancelled"`` (``Done``; ``BenchDone`` for a benchmark).

The template renderer (:mod:`app.engine.template_child`): :class:`RenderPrompt` →
:class:`RenderedPrompt` or :class:`Failed`, over and over; it holds no model, only limits.

One-shot jobs, one request each: :class:`ScoreQuality` → :class:`QualityProgress`…
:class:`QualityResult` (:mod:`app.engine.quality_child`); :class:`Quantize` →
:class:`QuantizeProgress`… :class:`Quantized` (:mod:`app.engine.quantize`); :class:`ComputeImatrix`
→ :class:`ImatrixProgress`… :class:`ImatrixDone` (:mod:`app.engine.imatrix_child`); :class:`LabQuantize`
→ :class:`LabProgress`… :class:`LabDone` (:mod:`app.engine.lab_child`); any may end in :class:`Failed`.
Those are defined in :mod:`app.engine.job_messages` and offered here with the rest.

Every message is a frozen dataclass; ``encode``/``decode`` turn it into a line and back, checking
the kind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from app.engine.job_messages import (
    ComputeImatrix as ComputeImatrix,
)
from app.engine.job_messages import (
    ImatrixDone as ImatrixDone,
)
from app.engine.job_messages import (
    ImatrixProgress as ImatrixProgress,
)
from app.engine.job_messages import (
    LabDone as LabDone,
)
from app.engine.job_messages import (
    LabProgress as LabProgress,
)
from app.engine.job_messages import (
    LabQuantize as LabQuantize,
)
from app.engine.job_messages import (
    QualityProgress as QualityProgress,
)
from app.engine.job_messages import (
    QualityResult as QualityResult,
)
from app.engine.job_messages import (
    Quantize as Quantize,
)
from app.engine.job_messages import (
    Quantized as Quantized,
)
from app.engine.job_messages import (
    QuantizeProgress as QuantizeProgress,
)
from app.engine.job_messages import (  # the one-shot jobs' messages, offered here as all the others
    ScoreQuality as ScoreQuality,
)
from app.engine.message import Message as Message
from app.engine.recent_ids import RecentIds as RecentIds  # both sides of the pipe keep the cancelled ids

if TYPE_CHECKING:
    from app.core.advice.chat_plan import ChatPlan


# --- parent → child -------------------------------------------------------------------------


@dataclass(frozen=True)
class Load(Message):
    kind: ClassVar[str] = "load"
    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    moe_cpu_layers: int = 0  # MoE: the first layers whose routed experts stay in RAM (--n-cpu-moe)
    n_threads: int = 0  # 0 = physical cores
    n_batch: int = 512
    n_ubatch: int = 512
    type_k: str = "F16"
    type_v: str = "F16"
    flash_attn: str = "auto"  # "auto" | "on" | "off"
    use_mmap: bool = True
    swa_full: bool = False
    # File ranges (offset, length) read only at load, whose pages the process hands back once
    # loaded (app/engine/page_advice.py); the plan computes them (ChatPlan.read_once).
    read_once: tuple[tuple[int, int], ...] = ()
    # Workers (``tailorlm worker``) whose devices come first, one entry per device, and each
    # device's share of the offloaded layers (workers', then this machine's GPUs): RunSettings'.
    rpc_devices: tuple[str, ...] = ()
    tensor_split: tuple[float, ...] = ()
    output_here: bool = False  # the output matmul's weights stay in RAM (RunSettings.output_here)

    @classmethod
    def from_plan(cls, planned: ChatPlan, *, n_threads: int = 0) -> Load:
        """The one way a chat plan becomes a load request: exactly the settings it predicted for."""
        s = planned.settings
        return cls(model_path=planned.model_path, n_ctx=s.n_ctx, n_gpu_layers=s.n_gpu_layers,
                   moe_cpu_layers=s.moe_cpu_layers, n_threads=n_threads,
                   n_batch=s.n_batch, n_ubatch=s.n_ubatch, type_k=s.type_k, type_v=s.type_v,
                   flash_attn="on" if s.flash_attn else "off", use_mmap=s.use_mmap, swa_full=s.swa_full,
                   read_once=planned.read_once, rpc_devices=s.rpc_devices,
                   tensor_split=s.gpu_split if s.rpc_devices else (), output_here=s.output_here)  # fmt: skip


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0  # OpenAI's: minus count × this (llama.cpp's penalties sampler)
    presence_penalty: float = 0.0  # minus this once a token occurred
    seed: int = -1  # -1 = random
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: always produce max_tokens, as llama-bench does
    grammar: str = ""  # GBNF (start rule "root"): the answer can only be text it admits


@dataclass(frozen=True)
class Generate(Message):
    kind: ClassVar[str] = "generate"
    request_id: int
    prompt: str  # already rendered with the chat template
    sampling: Sampling = field(default_factory=Sampling)
    flush_ms: float = 20.0  # batch tokens into one event per this many milliseconds


@dataclass(frozen=True)
class Cancel(Message):
    """Stop request ``request_id`` wherever it is: running, queued, or not sent yet (the child
    remembers recent cancelled ids, so a cancel that overtakes its request still wins)."""

    kind: ClassVar[str] = "cancel"
    request_id: int


@dataclass(frozen=True)
class Tokenize(Message):
    kind: ClassVar[str] = "tokenize"
    request_id: int  # the request it serves: a chat's history trimming uses its answer's id
    text: str


@dataclass(frozen=True)
class Stats(Message):
    kind: ClassVar[str] = "stats"
    request_id: int


@dataclass(frozen=True)
class Bench(Message):
    """Measure the loaded model as llama-bench does (:mod:`app.engine.bench_loop`): a prompt of
    ``n_prompt`` random tokens, then ``n_gen`` tokens one by one, ``reps`` times within ``budget_s``
    → :class:`BenchProgress`… :class:`BenchDone`. Cancelled like an answer."""

    kind: ClassVar[str] = "bench"
    request_id: int
    n_prompt: int = 512
    n_gen: int = 128
    reps: int = 3
    budget_s: float = 20.0


@dataclass(frozen=True)
class Unload(Message):
    kind: ClassVar[str] = "unload"


@dataclass(frozen=True)
class Shutdown(Message):
    kind: ClassVar[str] = "shutdown"


# --- child → parent -------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadProgress(Message):
    kind: ClassVar[str] = "load_progress"
    fraction: float


@dataclass(frozen=True)
class Loaded(Message):
    kind: ClassVar[str] = "loaded"
    load_s: float
    n_ctx: int
    n_gpu_layers: int
    n_threads: int
    flash_attn: bool
    bos_token: str
    eos_token: str
    chat_template: str | None
    rss_bytes: int
    buffers: dict[str, int]  # llama.cpp's logged buffer sizes: "model:CPU_Mapped" → bytes, …
    released_bytes: int = 0  # read-once file pages handed back after the load (Load.read_once)


@dataclass(frozen=True)
class TokenChunk(Message):
    kind: ClassVar[str] = "tokens"
    request_id: int
    text: str
    n_tokens: int


@dataclass(frozen=True)
class Done(Message):
    kind: ClassVar[str] = "done"
    request_id: int
    stop_reason: str  # "eos" | "stop_string" | "max_tokens" | "cancelled" | "context_full"
    n_prompt_tokens: int | None  # None: cancelled before the prompt was tokenized
    n_prompt_evaluated: int  # prompt tokens evaluated for this request (not already in the KV cache)
    n_gen_tokens: int
    ttft_ms: float | None  # request received → first token sampled; None: no token was sampled
    prompt_tok_s: float | None  # None: the prompt was not evaluated to its end
    gen_tok_s: float | None  # None: no token was generated
    rss_bytes: int | None  # the model process's resident set; None: the request never reached it
    peak_rss_bytes: int | None

    @classmethod
    def cancelled_before_start(cls, request_id: int, *, rss_bytes: int | None = None,
                               peak_rss_bytes: int | None = None) -> Done:  # fmt: skip
        """The answer to a request whose cancel came first: nothing was tokenized or evaluated."""
        return cls(request_id=request_id, stop_reason="cancelled", n_prompt_tokens=None, n_prompt_evaluated=0,
                   n_gen_tokens=0, ttft_ms=None, prompt_tok_s=None, gen_tok_s=None, rss_bytes=rss_bytes,
                   peak_rss_bytes=peak_rss_bytes)  # fmt: skip


@dataclass(frozen=True)
class BenchProgress(Message):
    kind: ClassVar[str] = "bench_progress"
    request_id: int
    fraction: float  # of the repetitions asked for


@dataclass(frozen=True)
class BenchDone(Message):
    kind: ClassVar[str] = "bench_done"
    request_id: int
    n_prompt: int  # what was measured (less than asked when the budget or the context is short)
    n_gen: int
    prompt_tok_s: list[float]  # one per repetition
    gen_tok_s: list[float]  # at a depth of n_prompt
    stop_reason: str  # "done" | "cancelled"
    rss_bytes: int
    peak_rss_bytes: int


@dataclass(frozen=True)
class TokenCount(Message):
    kind: ClassVar[str] = "token_count"
    request_id: int
    n_tokens: int


@dataclass(frozen=True)
class StatsReport(Message):
    kind: ClassVar[str] = "stats_report"
    request_id: int
    rss_bytes: int
    peak_rss_bytes: int
    loaded: bool
    n_ctx: int
    n_ctx_used: int  # tokens in the KV cache now


@dataclass(frozen=True)
class Failed(Message):
    kind: ClassVar[str] = "failed"
    stage: str  # "load" | "generate" | "tokenize" | "protocol" | a job's request kind
    message: str
    hint: str | None = None
    request_id: int | None = None
    error: str = ""  # the TailorError class the child raised (app.engine.errors.from_failure); "" = none


# --- the template renderer -------------------------------------------------------------------


@dataclass(frozen=True)
class RenderPrompt(Message):
    """Render a chat template (untrusted Jinja from a model file) for ``messages``."""

    kind: ClassVar[str] = "render_prompt"
    request_id: int
    jinja: str
    messages: list[dict[str, str]]
    bos_token: str = ""
    eos_token: str = ""
    add_generation_prompt: bool = True


@dataclass(frozen=True)
class RenderedPrompt(Message):
    kind: ClassVar[str] = "rendered_prompt"
    request_id: int
    text: str


KINDS: dict[str, type[Message]] = {
    c.kind: c
    for c in (Load, Generate, Cancel, Tokenize, Stats, Bench, BenchProgress, BenchDone, Unload, Shutdown, LoadProgress, Loaded, TokenChunk, Done,
              TokenCount, StatsReport, Failed, RenderPrompt, RenderedPrompt, ScoreQuality, QualityProgress, QualityResult, ComputeImatrix, ImatrixProgress, ImatrixDone, Quantize,
              QuantizeProgress, Quantized,
              LabQuantize, LabProgress, LabDone)
}  # fmt: skip


def encode(msg: Message) -> bytes:
    body = asdict(msg)
    body["kind"] = msg.kind
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> Message:
    data: dict[str, Any] = json.loads(line)
    cls = KINDS.get(str(data.pop("kind", "")))
    if cls is None:
        raise ValueError(f"unknown message kind in {str(line)[:80]!r}")
    names = {f.name for f in fields(cls)}
    if cls is Load and isinstance(data.get("read_once"), list):
        data["read_once"] = tuple((int(off), int(n)) for off, n in data["read_once"])
    if cls is Load:
        data["rpc_devices"] = tuple(str(e) for e in data.get("rpc_devices", ()))
        data["tensor_split"] = tuple(float(x) for x in data.get("tensor_split", ()))
    if cls is Generate and isinstance(data.get("sampling"), dict):
        s = data["sampling"]
        s["stop"] = tuple(s.get("stop", ()))
        data["sampling"] = Sampling(**{k: v for k, v in s.items() if k in {f.name for f in fields(Sampling)}})
    if cls is Quantize and isinstance(data.get("keep"), list):
        data["keep"] = tuple((str(p), str(t)) for p, t in data["keep"])
    return cls(**{k: v for k, v in data.items() if k in names})

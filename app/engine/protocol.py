"""The typed messages between the app and its model process: one JSON object per line.

Parent → child: :class:`Load`, :class:`Generate`, :class:`Cancel`, :class:`Tokenize`,
:class:`Stats`, :class:`Unload`, :class:`Shutdown`. Child → parent: :class:`LoadProgress`,
:class:`Loaded`, :class:`TokenChunk`, :class:`Done`, :class:`TokenCount`, :class:`StatsReport`,
:class:`Failed`. Every message is a
frozen dataclass; ``encode``/``decode`` turn it into a line and back, checking the kind.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from app.core.advice.chat_plan import ChatPlan


@dataclass(frozen=True)
class Message:
    kind: ClassVar[str] = ""


# --- parent → child -------------------------------------------------------------------------


@dataclass(frozen=True)
class Load(Message):
    kind: ClassVar[str] = "load"
    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    n_threads: int = 0  # 0 = physical cores
    n_batch: int = 512
    n_ubatch: int = 512
    type_k: str = "F16"
    type_v: str = "F16"
    flash_attn: str = "auto"  # "auto" | "on" | "off"
    use_mmap: bool = True
    swa_full: bool = False

    @classmethod
    def from_plan(cls, planned: ChatPlan, *, n_threads: int = 0) -> Load:
        """The one way a chat plan becomes a load request: exactly the settings it predicted for."""
        s = planned.settings
        return cls(model_path=planned.model_path, n_ctx=s.n_ctx, n_gpu_layers=s.n_gpu_layers, n_threads=n_threads,
                   n_batch=s.n_batch, n_ubatch=s.n_ubatch, type_k=s.type_k, type_v=s.type_v,
                   flash_attn="on" if s.flash_attn else "off", use_mmap=s.use_mmap, swa_full=s.swa_full)  # fmt: skip


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    seed: int = -1  # -1 = random
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # benchmarks: always produce max_tokens, as llama-bench does


@dataclass(frozen=True)
class Generate(Message):
    kind: ClassVar[str] = "generate"
    request_id: int
    prompt: str  # already rendered with the chat template
    sampling: Sampling = field(default_factory=Sampling)
    flush_ms: float = 20.0  # batch tokens into one event per this many milliseconds


@dataclass(frozen=True)
class Cancel(Message):
    kind: ClassVar[str] = "cancel"
    request_id: int


@dataclass(frozen=True)
class Tokenize(Message):
    kind: ClassVar[str] = "tokenize"
    request_id: int
    text: str


@dataclass(frozen=True)
class Stats(Message):
    kind: ClassVar[str] = "stats"
    request_id: int


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
    n_prompt_tokens: int
    n_prompt_evaluated: int  # prompt tokens not already in the KV cache
    n_gen_tokens: int
    ttft_ms: float  # request received → first token sampled
    prompt_tok_s: float
    gen_tok_s: float
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
    stage: str  # "load" | "generate" | "protocol"
    message: str
    hint: str | None = None
    request_id: int | None = None


KINDS: dict[str, type[Message]] = {
    c.kind: c
    for c in (Load, Generate, Cancel, Tokenize, Stats, Unload, Shutdown, LoadProgress, Loaded, TokenChunk, Done,
              TokenCount, StatsReport, Failed)
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
    if cls is Generate and isinstance(data.get("sampling"), dict):
        s = data["sampling"]
        s["stop"] = tuple(s.get("stop", ()))
        data["sampling"] = Sampling(**{k: v for k, v in s.items() if k in {f.name for f in fields(Sampling)}})
    return cls(**{k: v for k, v in data.items() if k in names})

"""The messages of the one-shot jobs (:mod:`app.engine.protocol` has the rest, and every kind):
the quality check (:mod:`app.engine.quality_child`), the importance matrix
(:mod:`app.engine.imatrix_child`), the quantizer (:mod:`app.engine.quantize`) and the quant lab
(:mod:`app.engine.lab_child`). Each takes one request and answers progress lines and one result
or ``Failed``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from app.engine.message import Message


@dataclass(frozen=True)
class ScoreQuality(Message):
    kind: ClassVar[str] = "score_quality"
    reference: str  # GGUF paths
    candidate: str
    text: str
    n_ctx: int
    n_threads: int = 0  # 0 = physical cores


@dataclass(frozen=True)
class QualityProgress(Message):
    kind: ClassVar[str] = "quality_progress"
    fraction: float  # of the chunks scored


@dataclass(frozen=True)
class QualityResult(Message):
    """What a quantization costs, measured: perplexity and KL divergence against a reference."""

    kind: ClassVar[str] = "quality_result"
    reference: str
    candidate: str
    n_vocab: int
    n_ctx: int  # tokens per chunk (smaller than asked when the whole text is shorter)
    n_text_tokens: int
    n_chunks: int
    n_tokens: int  # scored tokens: the second half of every chunk
    ppl_ref: float
    ppl_cand: float
    kld_mean: float  # nats per token, KL(reference || candidate)
    kld_p99: float
    top1_agreement: float  # share of positions where both models' most likely token is the same
    ref_tok_s: float  # each model's batched evaluation speed alone
    cand_tok_s: float
    tok_s: float  # text tokens per second through both models and the statistics
    eval_s: float
    elapsed_s: float  # including both loads (the parent adds the child's start)

    @property
    def ppl_change(self) -> float:
        """Relative perplexity increase of the candidate (0.05 = 5 % higher)."""
        return self.ppl_cand / self.ppl_ref - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ppl_change": self.ppl_change}


@dataclass(frozen=True)
class ComputeImatrix(Message):
    kind: ClassVar[str] = "compute_imatrix"
    model: str  # GGUF path
    output: str  # where the child writes the imatrix GGUF
    text: str
    dataset: str  # the text's name, stored in the file (imatrix.datasets)
    n_ctx: int = 512  # tokens per chunk, as llama-imatrix
    n_chunks: int = 0  # 0 = every whole chunk of the text
    n_threads: int = 0  # 0 = physical cores
    n_gpu_layers: int = 0


@dataclass(frozen=True)
class ImatrixProgress(Message):
    kind: ClassVar[str] = "imatrix_progress"
    chunks_done: int
    n_chunks: int
    tok_s: float


@dataclass(frozen=True)
class ImatrixDone(Message):
    kind: ClassVar[str] = "imatrix_done"
    output: str
    n_chunks: int
    n_tokens: int  # tokens evaluated
    n_entries: int  # weight matrices with statistics
    eval_s: float  # the evaluation alone, without the model's load


@dataclass(frozen=True)
class Quantize(Message):
    kind: ClassVar[str] = "quantize"
    source: str  # GGUF paths
    output: str
    to: str  # llama.cpp file type name: "Q4_K_M"
    n_threads: int = 0  # 0 = llama.cpp's default
    # the importance matrix as the quantizer takes it, from the parent, which read and checked the
    # file: every entry's values (sums / counts), float32, one after another in this raw file …
    imatrix_values: str | None = None
    imatrix_entries: tuple[tuple[str, int], ...] = ()  # … (tensor name, number of values) in order
    # what the output's quantize.imatrix.* keys say: the file's name, the first dataset ("" for none),
    # the entry count and the chunk count
    imatrix_kv: tuple[str, str, int, int] = ("", "", 0, 0)
    keep: tuple[tuple[str, str], ...] = ()  # (pattern, ggml type): llama-quantize --tensor-type


@dataclass(frozen=True)
class QuantizeProgress(Message):
    kind: ClassVar[str] = "quantize_progress"
    fraction: float  # of the tensors written
    tensor: str  # the tensor just written


@dataclass(frozen=True)
class Quantized(Message):
    kind: ClassVar[str] = "quantized"
    output: str


# The quantization lab (app.engine.lab_child): LabQuantize → LabProgress… LabDone, or Failed.
@dataclass(frozen=True)
class LabQuantize(Message):
    kind: ClassVar[str] = "lab_quantize"
    path: str  # GGUF
    tensor: str
    target: str  # ggml type name: "IQ3_XXS"
    imatrix: str | None = None  # an importance-matrix file, either format
    max_weights: int = 1 << 20  # evenly spaced whole rows up to this many weights
    n_threads: int = 0  # 0 = physical cores


@dataclass(frozen=True)
class LabProgress(Message):
    kind: ClassVar[str] = "lab_progress"
    stage: str  # what the child is doing, in words


@dataclass(frozen=True)
class LabDone(Message):
    kind: ClassVar[str] = "lab_done"
    report: dict[str, Any]  # app.core.model.quant_lab.LabReport.to_dict(): a few kB

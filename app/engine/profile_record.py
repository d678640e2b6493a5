"""Every run leaves a profile (issue 19): what was loaded, with which settings, on which machine, and
what happened — peak RAM/VRAM, load time, speeds, or the failure.

A chat (terminal or window) records one profile per finished answer and one per failed load
(:class:`ProfileRecorder`); the advisor finds them again by the file's identity and the plan's
settings. Recording never stops a chat: a store that cannot be written is logged and skipped.
"""

from __future__ import annotations

import logging
import statistics
from functools import cache
from pathlib import Path
from typing import Any

from app.core.advice.profiles import (
    Measured,
    Predicted,
    Profile,
    RunKey,
    file_identity,
    llama_cpp_version,
    machine_fingerprint,
    utc_now,
)
from app.core.errors import TailorError
from app.core.model.gguf_header import GGUFHeader
from app.engine import protocol as P
from app.engine.host import physical_cores

log = logging.getLogger(__name__)


@cache
def _machine_profile() -> Any:
    """This machine as detected once per process, without overrides, its bandwidth the cached one."""
    from app.core.machine.hardware import detect_machine

    return detect_machine(measure_bandwidth=False)


def _machine() -> tuple[str, str]:
    """This machine's (machine_id, hardware_class)."""
    return machine_fingerprint(_machine_profile())


def model_name_and_quant(path: str, header: GGUFHeader) -> tuple[str, str | None]:
    """The model's name as the advisor shows it (the catalog's, else the file's), so that a chat and
    the advisor name a model alike — the header's ``general.name`` if the file cannot say more —
    and its quantization ("Q4_K_M"; None if the file does not say)."""
    from app.core.advice.naming import display_name
    from app.core.model.info import model_info_from_header

    own = str(header.metadata.get("general.name") or Path(path).stem)
    try:
        info = model_info_from_header(header, source=path, source_kind="gguf", name=own)
        return display_name(info), info.file_type
    except TailorError:
        return own, None


def run_key(load: P.Load, *, file_id: str, quant: str, n_threads: int) -> RunKey:
    return RunKey(file_id=file_id, quant=quant, n_ctx=load.n_ctx, type_k=load.type_k.upper(),
                  type_v=load.type_v.upper(), n_gpu_layers=load.n_gpu_layers, moe_cpu_layers=load.moe_cpu_layers,
                  n_threads=max(1, n_threads), flash_attn=load.flash_attn == "on")  # fmt: skip


class ProfileRecorder:
    """Records the runs of one loaded model (``load``, as ``quant``, named ``model_name``)."""

    def __init__(self, load: P.Load, *, quant: str, model_name: str) -> None:
        self.load, self.quant, self.model_name = load, quant, model_name
        self._file_id: str | None = None
        self._model: Any = None  # the file's ModelInfo, read for the first prediction

    def _profile(self, n_threads: int, measured: Measured, kind: str, predicted: Predicted | None) -> Profile:
        if self._file_id is None:
            self._file_id = file_identity(Path(self.load.model_path))
        machine_id, hardware_class = _machine()
        key = run_key(self.load, file_id=self._file_id, quant=self.quant, n_threads=n_threads)
        return Profile(key=key, measured=measured, machine_id=machine_id, hardware_class=hardware_class,
                       llama_cpp=llama_cpp_version(), source="here", model_name=self.model_name[:256] or "model",
                       kind=kind, predicted=predicted)  # fmt: skip

    def predicted(self, n_threads: int, depth: int) -> Predicted | None:
        """The advisor's prediction for this run at ``depth`` (app.core.advice.run_prediction);
        None when the file cannot be planned (an architecture the advisor does not know)."""
        from app.core.advice.recommend import budget_from_profile
        from app.core.advice.run_prediction import predict_run
        from app.core.model.source import model_from_gguf

        try:
            if self._model is None:
                self._model = model_from_gguf(Path(self.load.model_path))
            ld = self.load
            return predict_run(self._model, budget_from_profile(_machine_profile()), quant=self.quant, n_ctx=ld.n_ctx,
                               type_k=ld.type_k, n_gpu_layers=ld.n_gpu_layers, moe_cpu_layers=ld.moe_cpu_layers,
                               n_threads=n_threads, depth=depth)  # fmt: skip
        except (TailorError, OSError, ValueError, KeyError) as exc:
            log.warning("no prediction beside the measurement: %s", exc)
            return None

    def _record(self, n_threads: int, measured: Measured, *, kind: str = "answer",
                predicted: Predicted | None = None) -> None:  # fmt: skip
        from app.core.advice.profiles_db import ProfileStore

        try:
            profile = self._profile(n_threads, measured, kind, predicted)
            with ProfileStore() as store:
                store.record(profile)
        except (TailorError, OSError) as exc:  # a chat goes on without its profile
            log.warning("could not record a profile: %s", exc)

    def answered(self, loaded: P.Loaded, done: P.Done, peak: Any) -> None:
        """A finished answer: the process's peaks so far, the load time and the answer's speeds."""
        if done.stop_reason == "cancelled" or done.gen_tok_s is None:
            return
        depth = (done.n_prompt_tokens or 0) + done.n_gen_tokens
        self._record(loaded.n_threads, Measured(
            outcome="ok", peak_ram_bytes=_larger(peak.child_rss_bytes, done.peak_rss_bytes),
            peak_vram_bytes=peak.child_vram_bytes, load_s=loaded.load_s, gen_tok_s=done.gen_tok_s,
            prompt_tok_s=done.prompt_tok_s, depth=depth, when=utc_now(), n_prompt=done.n_prompt_evaluated,
            n_gen=done.n_gen_tokens), predicted=self.predicted(loaded.n_threads, depth))  # fmt: skip

    def served(self, loaded: P.Loaded, answers: list[P.Done]) -> None:
        """A batch of the server's finished answers as one profile: the medians of their speeds and
        depths, the highest peak, the answers counted in ``reps``."""
        done = [d for d in answers if d.stop_reason != "cancelled" and d.gen_tok_s]
        if not done:
            return
        depth = int(statistics.median((d.n_prompt_tokens or 0) + d.n_gen_tokens for d in done))
        prompts = [d.prompt_tok_s for d in done if d.prompt_tok_s and d.n_prompt_evaluated > 1]
        peaks = [d.peak_rss_bytes for d in done if d.peak_rss_bytes is not None]
        self._record(loaded.n_threads, Measured(
            outcome="ok", peak_ram_bytes=max(peaks) if peaks else None, peak_vram_bytes=None, load_s=loaded.load_s,
            gen_tok_s=statistics.median(d.gen_tok_s or 0.0 for d in done),
            prompt_tok_s=statistics.median(prompts) if prompts else None, depth=depth, when=utc_now(),
            n_prompt=sum(d.n_prompt_evaluated for d in done), n_gen=sum(d.n_gen_tokens for d in done),
            reps=len(done)), kind="server", predicted=self.predicted(loaded.n_threads, depth))  # fmt: skip

    def benched(self, loaded: P.Loaded, measured: Measured, predicted: Predicted | None) -> None:
        """A benchmark run (app.engine.bench): what calibrates this machine's speed model."""
        self._record(loaded.n_threads, measured, kind="bench", predicted=predicted)

    def load_failed(self, *, out_of_memory: bool) -> None:
        """The load failed: out of memory (a buffer did not fit, the process was killed for memory)
        or a crash."""
        self._record(self.load.n_threads or physical_cores(), Measured(
            outcome="out_of_memory" if out_of_memory else "crash", peak_ram_bytes=None, peak_vram_bytes=None,
            load_s=None, gen_tok_s=None, prompt_tok_s=None, depth=None, when=utc_now()), kind="load")  # fmt: skip


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def record_load_failure(recorder: ProfileRecorder, exc: BaseException) -> None:
    """A load that failed for this plan (memory, a crash) is a profile; a damaged file or a cancel
    says nothing about the plan and is not recorded."""
    from app.engine.errors import LoadFailed, ProcessDied

    if isinstance(exc, ProcessDied):
        death = exc.death
        if death is not None and not death.closed_by_app:
            recorder.load_failed(out_of_memory=death.maybe_memory)
    elif isinstance(exc, LoadFailed) and "memory" in str(exc).lower():
        recorder.load_failed(out_of_memory=True)

"""A plan that failed on this machine is not recommended again, and the advisor says why (issue 19)."""

from __future__ import annotations

from pathlib import Path

from app.core.advice.profiles import Measured, Profile, RunKey, failed_runs, utc_now
from app.core.advice.recommend import Budget, advise, plan_settings
from app.core.model.gguf_header import read_gguf_file
from app.core.model.info import model_info_from_header
from app.core.units import GIB

MACHINE = "a" * 64


def _run(plan_key: tuple[str, int, str, int, int], outcome: str, when: str) -> Profile:
    quant, n_ctx, type_k, ngl, moe = plan_key
    key = RunKey(file_id="b" * 64, quant=quant, n_ctx=n_ctx, type_k=type_k, type_v=type_k, n_gpu_layers=ngl,
                 moe_cpu_layers=moe, n_threads=2, flash_attn=True)  # fmt: skip
    measured = Measured(outcome=outcome, peak_ram_bytes=None, peak_vram_bytes=None, load_s=None,
                        gen_tok_s=None if outcome != "ok" else 50.0, prompt_tok_s=None, depth=None, when=when)  # fmt: skip
    return Profile(key=key, measured=measured, machine_id=MACHINE, hardware_class="cpu:x/2c/avx2",
                   llama_cpp="llama-cpp-python 0.3.36", source="here", model_name="SmolLM2")  # fmt: skip


def test_a_failed_plan_is_avoided_and_named(smollm2_path: Path) -> None:
    model = model_info_from_header(read_gguf_file(smollm2_path), source=str(smollm2_path), source_kind="gguf")
    budget = Budget(ram_bytes=16 * GIB, ram_bandwidth_bytes_s=10e9, cpu_isa=("AVX2",))
    first = advise(model, budget).recommended
    assert first is not None
    failed = failed_runs([_run(plan_settings(first), "out_of_memory", "2026-12-01T10:00:00.000000+00:00")])
    again = advise(model, budget, failed_here=failed)
    assert again.recommended is not None and plan_settings(again.recommended) != plan_settings(first)
    assert any("ran out of memory here on 2026-12-01" in r and first.quant in r for r in again.reasons)
    assert len(again.plans) == len(advise(model, budget).plans)  # still shown, with its prediction


def test_a_later_success_clears_a_failure() -> None:
    key = ("Q4_K_M", 4096, "F16", 0, 0)
    older = _run(key, "crash", "2026-12-01T10:00:00.000000+00:00")
    assert failed_runs([older]) == {key: "the model process crashed here on 2026-12-01"}
    assert failed_runs([older, _run(key, "ok", utc_now())]) == {}

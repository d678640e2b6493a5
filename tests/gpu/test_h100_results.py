"""The estimator against what an H100 measured (``results/*.json``, written on the GPU machine by
``gpu_proof.py``). CI has no GPU; these keep the CUDA rules of ``app.core.advice.estimate`` honest anyway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.core.units import MIB
from tests.gpu.gpu_proof import predict, report

RESULTS = sorted((Path(__file__).parent / "results").glob("h100*.json"))


@pytest.fixture(params=RESULTS, ids=[p.stem for p in RESULTS])
def run(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text())  # type: ignore[no-any-return]


def test_every_plan_loaded_and_is_predicted_within_the_targets(run: dict[str, Any]) -> None:
    s = report(run)["summary"]
    assert s["plan_loads"] >= 20 and s["plan_loads_ok"] == s["plan_loads"]
    # issue 7: at most 5 % median and 10 % worst error, for VRAM (NVML) and RAM (RSS)
    for what in ("vram", "rss"):
        assert s[what]["median_abs"] <= 0.05 and s[what]["worst_abs"] <= 0.10, (what, s[what])


def test_buffers_match_llama_cpp_device_by_device(run: dict[str, Any]) -> None:
    for key, m in run["loads"].items():
        if not m.get("ok"):
            continue
        devices = {d["device"]: d for d in predict(run, key)["devices"]}
        cpu, gpu = devices["CPU"], devices.get("GPU0", {})
        b = m["buffers"]
        assert abs(gpu.get("weights_bytes", 0) - b.get("model:CUDA0", 0)) < MIB, key
        assert gpu.get("kv_bytes", 0) == b.get("kv:CUDA0", 0), key
        assert cpu["kv_bytes"] == b.get("kv:CPU", 0), key
        assert abs(cpu["compute_bytes"] - b["compute:CUDA_Host"]) < MIB, key  # pinned graph inputs
        # Op-offload copies are summed, not overlapped: a little over, never much under.
        assert -8 * MIB <= gpu.get("compute_bytes", 0) - b.get("compute:CUDA0", 0) <= 96 * MIB, key


def test_planning_against_free_vram_and_failures_that_name_their_cause(run: dict[str, Any]) -> None:
    fv = run["free_vram"]
    for case in fv["cases"]:
        assert case["budget_vram_bytes"] < case["free_before_bytes"]  # free VRAM, not the card's total
        for load in (case["load"], case["recommended"]["load"]):
            assert run["loads"][load]["ok"], load
    weights, kv = (o["error"] for o in fv["oom"])
    assert "CUDA out of memory while allocating the model weights" in weights
    assert "CUDA out of memory while allocating the KV cache" in kv
    assert all(o["engine_alive"] for o in fv["oom"]) and fv["after_failures"]["loaded"]

"""The status bar's numbers for the model process: what could not be measured, or was not
predicted, travels as None and shows as "—" — never as 0."""

from __future__ import annotations

from app.core.units import GIB, MIB
from app.engine.monitor import MemorySample
from app.gui.panels.chat_metrics import AnswerMeter, status_text


def test_unattributable_vram_is_none_and_shows_as_a_dash() -> None:
    # a GPU is there (its use was read), but NVML could not attribute the model process's share
    memory = MemorySample(
        0.0, child_rss_bytes=300 * MIB, system_used_bytes=8 * GIB, device_vram_used_bytes=2 * GIB
    )
    m = AnswerMeter().snapshot(memory, {"ram_bytes": 310 * MIB, "vram_bytes": 1 * GIB})
    assert m["vram_bytes"] is None and m["rss_bytes"] == 300 * MIB
    assert status_text(m) == "RAM 300 MiB (predicted 310 MiB)   VRAM — (predicted 1.00 GiB)"


def test_without_a_gpu_there_is_no_vram_to_show() -> None:
    memory = MemorySample(0.0, child_rss_bytes=300 * MIB, system_used_bytes=8 * GIB)
    m = AnswerMeter().snapshot(memory, {"ram_bytes": 310 * MIB})
    assert "vram_bytes" not in m and m["predicted_vram_bytes"] is None  # not predicted: None, not 0
    assert status_text(m) == "RAM 300 MiB (predicted 310 MiB)"


def test_measured_figures_and_an_unread_process() -> None:
    memory = MemorySample(
        0.0, child_rss_bytes=None, child_vram_bytes=512 * MIB, device_vram_used_bytes=2 * GIB
    )
    m = AnswerMeter().snapshot(memory, {})
    assert status_text(m) == "RAM —   VRAM 512 MiB"
    assert status_text({"gen_tok_s": 41.5, "ttft_ms": 120}) == "41.5 tok/s   first token 120 ms"
    assert status_text({}) == ""  # no model loaded


def test_the_time_to_first_token_shown_live_is_the_one_kept() -> None:
    """The session's figure arrives with the first token and stays when the answer ends, whatever
    the model process's own ttft_ms says."""
    from app.engine import protocol as P

    meter = AnswerMeter()
    meter.start()
    assert "ttft_ms" not in meter.snapshot(None, {})  # no token yet: nothing to show
    meter.first_token(212.0)
    meter.add(3)
    assert meter.snapshot(None, {})["ttft_ms"] == 212.0
    done = P.Done(request_id=1, stop_reason="eos", n_prompt_tokens=10, n_prompt_evaluated=10, n_gen_tokens=3,
                  ttft_ms=150.0, prompt_tok_s=900.0, gen_tok_s=30.0, rss_bytes=None, peak_rss_bytes=None)  # fmt: skip
    meter.finish(done)
    after = meter.snapshot(None, {})
    assert after["ttft_ms"] == 212.0 and after["gen_tok_s"] == 30.0
    assert status_text(after) == "30.0 tok/s   first token 212 ms"

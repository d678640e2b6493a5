"""Perplexity / KL divergence of one quantization against another, with real models and a real
child process: SmolLM2 Q4_1 against itself and against copies requantized by llama.cpp. Short
contexts and text slices keep the whole module to ~30 s of evaluation on 2 cores."""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import re
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.cli import quality as cli_quality
from app.core.errors import Cancelled, EngineError, TailorError
from app.engine.quality_eval import (
    QualityResult,
    TextTooShortError,
    VocabularyMismatchError,
    default_text,
    evaluate,
)

TEXT = default_text()[:1400]  # 316 SmolLM2 tokens: 2 chunks of 128


def requantize(src: Path, dst: Path, ftype: str) -> Path:
    """``tests.synthetic.quantize_gguf`` with ``allow_requantize``: llama.cpp refuses a quantized
    source without it ("requantizing from type q4_1 is disabled")."""
    import llama_cpp

    from tests.synthetic import _ftype_constant

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = _ftype_constant(ftype)
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize → {ftype} failed with code {rc}"
    return dst


@pytest.fixture(scope="module")
def requants(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("requant")
    return {q: requantize(smollm2_path, folder / f"smollm2-{q}.gguf", q) for q in ("Q8_0", "Q2_K")}


def quality_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children() if "app.engine.quality_child" in " ".join(p.cmdline())]


def test_a_model_against_itself_loses_nothing(smollm2_path: Path) -> None:
    seen: list[float] = []
    r = evaluate(smollm2_path, smollm2_path, TEXT, n_ctx=128, on_progress=seen.append)
    assert r.n_ctx == 128 and r.n_chunks == r.n_text_tokens // 128 == 2
    assert r.n_tokens == r.n_chunks * 63  # positions 64..126 of each chunk predict 65..127
    assert r.ppl_ref == r.ppl_cand and 5 < r.ppl_ref < 200
    assert abs(r.kld_mean) < 1e-6 and abs(r.kld_p99) < 1e-6 and r.top1_agreement == 1.0
    assert r.tok_s > 0 and r.ref_tok_s > r.tok_s and r.elapsed_s > r.eval_s > 0
    assert seen == [(i + 1) / r.n_chunks for i in range(r.n_chunks)]
    assert json.loads(json.dumps(r.to_dict()))["ppl_change"] == 0.0


def test_a_coarser_requantization_costs_more(smollm2_path: Path, requants: dict[str, Path]) -> None:
    q8, q2 = (evaluate(smollm2_path, requants[q], TEXT, n_ctx=128) for q in ("Q8_0", "Q2_K"))
    assert q8.n_chunks == q2.n_chunks == 2 and q8.n_tokens == 2 * 63
    assert q8.ppl_ref == q2.ppl_ref  # the same reference tokens, the same chunks
    assert 0 < q8.kld_mean < q2.kld_mean and q8.kld_p99 < q2.kld_p99
    assert q2.ppl_cand > q8.ppl_cand and q2.ppl_cand > q2.ppl_ref
    assert q2.top1_agreement < q8.top1_agreement <= 1.0
    # measured: Q8_0 0.005 (PPL +2 %), "Q2_K" 0.41 (PPL +26 %; 576-wide rows fall back to Q4_0/Q3_K)
    assert q8.kld_mean < 0.02 and q2.kld_mean > 0.1


def test_different_vocabularies_are_refused(smollm2_path: Path, gemma3_path: Path) -> None:
    with pytest.raises(
        VocabularyMismatchError, match=r"different vocabularies \(49152 vs 262144 tokens\)"
    ) as e:
        evaluate(smollm2_path, gemma3_path, TEXT, n_ctx=128)
    assert "same model" in (e.value.hint or "")


def test_a_text_shorter_than_a_chunk_is_one_chunk_and_a_tiny_one_is_refused(smollm2_path: Path) -> None:
    short = "The river rose for three days, and on the fourth the baker found a box of keys under his bench."
    r = evaluate(smollm2_path, smollm2_path, short, n_ctx=256)
    assert r.n_chunks == 1 and r.n_ctx == r.n_text_tokens < 256 and r.n_tokens > 0
    with pytest.raises(TextTooShortError, match="at least 16"):
        evaluate(smollm2_path, smollm2_path, "Too short.", n_ctx=256)


def test_a_context_beyond_training_is_refused(smollm2_path: Path) -> None:
    with pytest.raises(TailorError, match="longer than the 8,192 tokens the model was trained on"):
        evaluate(smollm2_path, smollm2_path, TEXT, n_ctx=16384)


def test_cancel_kills_the_child_promptly(smollm2_path: Path) -> None:
    cancel = threading.Event()
    t_cancel: list[float] = []

    def press_cancel() -> None:
        t_cancel.append(time.perf_counter())
        cancel.set()

    threading.Timer(1.0, press_cancel).start()  # mid-load or mid-chunk: either way the child must go
    with pytest.raises(Cancelled):
        evaluate(smollm2_path, smollm2_path, default_text(), n_ctx=512, cancel=cancel)
    assert time.perf_counter() - t_cancel[0] < 0.5  # measured ~0.06 s: one poll and a kill
    assert not quality_children()


def test_a_progress_callback_that_raises_cancelled_also_stops_the_child(smollm2_path: Path) -> None:
    def stop(fraction: float) -> None:  # the Orange-style cancel: the callback raises
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        evaluate(smollm2_path, smollm2_path, TEXT, n_ctx=128, on_progress=stop)
    assert not quality_children()


def test_a_killed_child_is_a_clear_engine_error(smollm2_path: Path) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            evaluate(smollm2_path, smollm2_path, default_text(), n_ctx=512)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 10
    while not (children := quality_children()) and time.monotonic() < deadline:
        time.sleep(0.02)
    children[0].kill()  # what the kernel's out-of-memory killer would do
    worker.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], EngineError)
    assert "ended unexpectedly" in str(errors[0]) and "killed" in str(errors[0])


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tailorlm")
    cli_quality.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["quality", *argv])


def test_cli_prints_numbers_as_json_and_as_a_table(
    smollm2_path: Path, requants: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "text.txt"
    text.write_text(TEXT[:350], encoding="utf-8")  # 79 tokens: one chunk of 64
    args = _cli(str(smollm2_path), str(requants["Q8_0"]), "--text", str(text), "--ctx", "64", "--json")
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference_quant"] == "Q4_1" and out["candidate_quant"] == "Q8_0"
    assert out["n_chunks"] == 1 and out["text"] == str(text)
    r = QualityResult(**{k: v for k, v in out.items() if k in QualityResult.__dataclass_fields__})
    assert math.isclose(out["ppl_change"], r.ppl_change) and 0 <= r.kld_mean < 0.05
    # The advisor shows the measurement beside the published number from now on.
    from app.cli import main as tailorlm

    assert tailorlm(["advise", str(requants["Q8_0"]), "--json", "--no-bandwidth"]) == 0
    here = json.loads(capsys.readouterr().out)["measured_quality"]
    assert here["Q8_0"]["reference"] == "Q4_1" and here["Q8_0"]["kld_mean"] == out["kld_mean"]

    cli_quality._print_table(r, ["Q4_1", "Q8_0"], "text.txt")
    table = capsys.readouterr().out
    assert "mean KL divergence" in table and "tok/s" in table
    verdict = (
        f"Q8_0 loses [a-z ]+: {100 * r.top1_agreement:.0f} % of next-token choices are the same as Q4_1's"
    )
    assert re.search(verdict, table)


def test_cli_errors_are_tailor_errors(smollm2_path: Path, tmp_path: Path) -> None:
    args = _cli(str(smollm2_path), str(tmp_path / "missing.gguf"))
    with pytest.raises(TailorError, match=r"missing\.gguf is not a \.gguf file"):
        args.func(args)
    binary = tmp_path / "text.bin"
    binary.write_bytes(b"\xff\xfe\x00text")
    args = _cli(str(smollm2_path), str(smollm2_path), "--text", str(binary))
    with pytest.raises(TailorError, match="not UTF-8"):
        args.func(args)

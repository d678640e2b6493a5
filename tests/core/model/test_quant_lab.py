"""The lab's arithmetic against numbers worked out by hand: the linear schemes' scales, zero-points
and levels, percentile clipping, the KL search, the round-trip errors and what an importance matrix
protects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.core.model import quant_lab as lab

X = np.array([-0.5, -0.123, 0.0, 0.334, 1.27])  # max |x| 1.27: an INT8 scale of exactly 1.27 / 127


def _fq(x: np.ndarray, scale: float, zp: int, bits: int, *, symmetric: bool) -> list[float]:
    return list(lab.fake_quantize(x, scale, zp, bits, symmetric=symmetric))


@pytest.mark.parametrize(
    ("bits", "scale", "levels"),
    [
        (8, 0.01, [-50, -12, 0, 33, 127]),  # -0.123 / 0.01 = -12.3 → -12
        (4, 1.27 / 7, [-3, -1, 0, 2, 7]),  # -0.5 / 0.1814 = -2.76 → -3
        (2, 1.27, [0, 0, 0, 0, 1]),  # three levels: -1.27, 0, 1.27
    ],
)
def test_symmetric_scale_zero_point_and_levels(bits: int, scale: float, levels: list[int]) -> None:
    s, zp = lab.symmetric_params(1.27, bits)
    assert s == pytest.approx(scale) and zp == 0
    assert _fq(X, s, zp, bits, symmetric=True) == pytest.approx([q * scale for q in levels])


@pytest.mark.parametrize(
    ("bits", "scale", "zero_point", "levels"),
    [
        (8, 1.77 / 255, 72, [0, 54, 72, 120, 255]),  # zero-point: 0.5 / 0.00694 = 72.03 → 72
        (4, 1.77 / 15, 4, [0, 3, 4, 7, 15]),  # 0.5 / 0.118 = 4.24 → 4
        (2, 1.77 / 3, 1, [0, 1, 1, 2, 3]),  # 1.27 lands on level 3 = (3 - 1) × 0.59 = 1.18
    ],
)
def test_asymmetric_scale_zero_point_and_levels(
    bits: int, scale: float, zero_point: int, levels: list[int]
) -> None:
    s, zp = lab.asymmetric_params(-0.5, 1.27, bits)
    assert s == pytest.approx(scale) and zp == zero_point
    assert _fq(X, s, zp, bits, symmetric=False) == pytest.approx([(q - zero_point) * scale for q in levels])
    # a range that does not hold zero is widened to it: zero stays exactly representable
    s, zp = lab.asymmetric_params(0.2, 1.0, bits)
    assert zp == 0 and s == pytest.approx(1.0 / (2**bits - 1))


def test_rows_for_every_scheme_calibration_and_width_with_percentile_clipping() -> None:
    x = np.arange(1.0, 1001.0).reshape(1, 1000)  # 1 … 1000
    rows = {(r.bits, r.scheme, r.calibration, r.granularity): r for r in lab.linear_explainer(x)}
    assert len(rows) == 3 * 6  # 1000 is no multiple of 32: no per-block rows
    minmax = rows[8, "symmetric", "min-max", "tensor"]
    assert minmax.scale == pytest.approx(1000 / 127) and minmax.clipped_share == 0.0
    pct = rows[8, "symmetric", "percentile", "tensor"]
    assert pct.range_hi == pytest.approx(1 + 0.999 * 999)  # numpy's linear interpolation
    assert pct.clipped_share == pytest.approx(0.001)  # only 1000 lies beyond it
    asym = rows[4, "asymmetric", "min-max", "tensor"]
    assert (asym.range_lo, asym.range_hi, asym.zero_point) == (0.0, 1000.0, 0)  # widened to hold 0
    for r in rows.values():  # fewer bits, more error, whatever the calibration
        if r.bits > 2:
            assert r.rmse < rows[2, r.scheme, r.calibration, r.granularity].rmse


def test_per_block_rows_use_each_blocks_own_scale() -> None:
    blocks = np.concatenate([np.linspace(-1.27, 1.27, 32), np.linspace(-2.54, 2.54, 32)]).reshape(1, 64)
    rows = {(r.bits, r.scheme, r.granularity): r for r in lab.linear_explainer(blocks, bits=(8,))}
    sym = rows[8, "symmetric", "block"]
    assert sym.scale == pytest.approx((0.01 + 0.02) / 2)  # the median of the two blocks' scales
    assert sym.range_lo is None and sym.clipped_share == 0.0
    assert sym.rmse < rows[8, "symmetric", "tensor"].rmse  # a block's own scale fits it better


def test_kl_clips_a_heavy_tail_and_keeps_a_uniform_range() -> None:
    rng = np.random.default_rng(0)
    heavy = rng.standard_t(2, 100_000)  # Student-t, 2 degrees of freedom: rare huge weights
    uniform = rng.uniform(-1, 1, 100_000)
    for bits in (8, 4, 2):
        assert lab.kl_threshold(heavy, bits) < 0.5 * np.abs(heavy).max()
        assert lab.kl_threshold(uniform, bits) > 0.95 * np.abs(uniform).max()
    assert lab.kl_threshold(np.zeros(10), 8) == 0.0
    row = next(r for r in lab.linear_explainer(heavy.reshape(1, -1)) if r.calibration == "KL divergence")
    assert row.clipped_share > 0 and row.range_hi is not None and row.range_hi < np.abs(heavy).max()


def test_round_trip_errors_and_the_within_5_percent_rule() -> None:
    before = np.array([1.0, 2.0, 0.01, -4.0])
    after = np.array([1.04, 2.2, 0.0, -4.0])
    s = lab.error_stats(before, after)
    assert s.mae == pytest.approx(0.0625) and s.max_error == pytest.approx(0.2)
    assert s.rmse == pytest.approx(np.sqrt((0.04**2 + 0.2**2 + 0.01**2) / 4))
    assert s.rms == pytest.approx(np.sqrt(21.0001 / 4))
    # 2.2 is 10 % off; 0.01 → 0 is judged against a tenth of the RMS (0.229): within
    assert s.within_share == 0.75
    h = lab.histograms(before, after)
    assert len(h.bin_edges) == lab.HISTOGRAM_BINS + 1 and h.before.sum() == h.after.sum() == 4


def test_importance_says_which_columns_are_protected() -> None:
    before = np.zeros((3, 200))
    weight = np.ones(200)
    weight[[7, 3]] = [200.0, 100.0]  # two columns (1 % of 200) matter most
    after = before + 0.2
    after[:, [3, 7]] = 0.05
    imp = lab.importance_report(before, after, weight, plain_after=before + 0.1)
    assert imp.top_columns[:2] == (7, 3) and imp.n_top == 2
    assert imp.top_share == pytest.approx(300 / 498)
    assert (imp.top_rmse, imp.rest_rmse) == (pytest.approx(0.05), pytest.approx(0.2))
    assert imp.weighted_rmse == pytest.approx(np.sqrt((300 * 0.05**2 + 198 * 0.2**2) / 498))
    assert imp.plain_top_rmse == pytest.approx(0.1) and imp.plain_weighted_rmse == pytest.approx(0.1)
    assert imp.type_uses_it
    assert not lab.importance_report(before, after, weight, plain_after=after).type_uses_it


def test_sampled_rows_are_evenly_spaced_whole_rows() -> None:
    assert list(lab.sample_rows(10, 100, 10_000)) == list(range(10))
    picked = lab.sample_rows(1000, 100, 1000)
    assert len(picked) == 10 and picked[0] == 0 and picked[-1] == 999
    assert len(lab.sample_rows(5, 10_000, 100)) == 1  # a row longer than the budget: one row


def test_a_report_survives_the_pipe() -> None:
    before = np.random.default_rng(1).standard_normal((4, 64))
    after = np.round(before * 4) / 4
    report = lab.LabReport(
        path="m.gguf", tensor="blk.0.ffn_down.weight", shape=(64, 4), source_type="F32", target_type="Q4_0",
        n_total=256, n_sampled=256, n_rows_sampled=4, bits_per_weight=4.5, source_bits_per_weight=32.0,
        stats=lab.error_stats(before, after), hist=lab.histograms(before, after),
        preview_before=(1.0, 2.0), preview_after=(1.0, 2.0), imatrix_note="",
        importance=lab.importance_report(before, after, np.arange(64.0), None),
        linear=lab.linear_explainer(before), quantized_sha256="a", dequantized_sha256="b",
    )  # fmt: skip
    back = lab.LabReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert np.array_equal(back.hist.bin_edges, report.hist.bin_edges)
    assert np.array_equal(back.hist.after, report.hist.after)
    assert back.importance == report.importance and back.linear == report.linear
    assert (back.shape, back.stats, back.preview_after) == (report.shape, report.stats, report.preview_after)

"""SpQR's column quantizer: second-order statistics in the container, exact outliers, error vs RTN."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report
from lowbit.core.testing import heavy_tailed, random_hessian
from lowbit.core.uniform import minmax_params
from lowbit.sparse.spqr import SpQRColumnQuantizer, leave_one_out_reduction, quantize_statistic


def test_statistic_round_trip_and_cost() -> None:
    x = torch.rand(3, 32) * 0.01 + 1e-3
    qs = quantize_statistic(x, 3, 16)
    assert qs.codes.shape == (3, 32) and int(qs.codes.max()) <= 7
    assert qs.scales is not None and torch.equal(qs.scales, qs.scales.half().float())  # fp16 stored
    back = qs.dequantize()
    assert (back - x).abs().max() <= (x.amax() - x.amin()) / 7  # within a second-level step
    rep = bit_report(qs)
    assert rep.parts["codes"] == 3 * 3 * 32 and rep.parts["scales"] == 16 * 3 * 2 and rep.parts["zeros"] == 16 * 3 * 2


def test_leave_one_out_matches_a_loop() -> None:
    Wg, d = heavy_tailed((4, 16), 0), torch.rand(16) + 0.5
    red = leave_one_out_reduction(Wg, d, 3)
    for r in range(4):
        s, z = minmax_params(Wg[r: r + 1], 3, zero_in_range=False)
        base = float((((Wg[r] - s * (torch.clamp(torch.round(Wg[r] / s + z), 0, 7) - z)) / d) ** 2).sum())
        for t in range(16):
            keep = [c for c in range(16) if c != t]
            w = Wg[r, keep][None]
            s, z = minmax_params(w, 3, zero_in_range=False)
            q = s * (torch.clamp(torch.round(w / s + z), 0, 7) - z)
            loo = float((((w - q) / d[keep]) ** 2).sum())
            assert float(red[r, t]) == pytest.approx(base - loo, rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("act_order", [False, True])
def test_container_second_order_and_outliers(act_order: bool) -> None:
    from lowbit.recon import quantize_weight

    W, H = heavy_tailed((32, 64), 1), random_hessian(64, 2)
    r = quantize_weight(W, H, SpQRColumnQuantizer(3), percdamp=1.0, act_order=act_order)
    qw = r.qweight
    assert torch.equal(qw.dequantize(), r.Q)
    assert qw.scales is None and set(qw.second_order) == {"scales", "zeros"}
    s, z = qw.group_params()
    assert s.shape == (32, 4) and (s > 0).all()
    out = qw.outliers
    assert out is not None and out.nnz > 0
    assert torch.equal(r.Q[out.rows, out.cols], out.values.float())  # reproduced exactly (fp16 values)
    # without outliers every entry is on its group's grid
    g = qw.group_index()
    grid = s[:, g] * (torch.clamp(torch.round(r.Q / s[:, g] + z[:, g]), 0, 7) - z[:, g])
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask[out.rows, out.cols] = True
    assert torch.equal(r.Q[~mask], grid[~mask])
    rep = bit_report(qw).per_weight()
    assert rep["codes"] == 3 and rep["scales"] == 3 / 16 and rep["zeros"] == 3 / 16
    assert rep["second_order"] == pytest.approx(2 * (16 + 16) / 256)
    assert rep["outlier_values"] == 16 * out.nnz / W.numel()
    assert (rep["g_idx"] > 0) == act_order
    parts = qw.split_rows([16, 16])
    assert torch.equal(torch.cat([p.dequantize() for p in parts]), r.Q)


def test_no_outliers_and_fp16_statistics() -> None:
    from lowbit.recon import quantize_weight

    W, H = heavy_tailed((16, 32), 3), random_hessian(32, 4)
    r = quantize_weight(W, H, SpQRColumnQuantizer(2, stat_bits=None, outlier_threshold=float("inf")))
    assert r.qweight.outliers is None and not r.qweight.second_order
    assert bit_report(r.qweight).bits_per_weight == pytest.approx(2 + (16 + 16) / 16)
    assert torch.equal(r.qweight.dequantize(), r.Q)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 4), act_order=st.booleans())
def test_spqr_error_not_above_rtn(seed: int, bits: int, act_order: bool) -> None:
    from lowbit.recon import UniformColumnQuantizer, hessian_error, quantize_weight, round_to_nearest

    W, H = heavy_tailed((32, 64), seed), random_hessian(64, seed + 1, n=96)
    r = quantize_weight(W, H, SpQRColumnQuantizer(bits), percdamp=0.01, act_order=act_order)
    Q_rtn, _ = round_to_nearest(W, UniformColumnQuantizer(bits, 16))
    assert r.error <= hessian_error(W, Q_rtn, H) * (1 + 1e-6)
    Q_same, _ = round_to_nearest(W, SpQRColumnQuantizer(bits))
    assert r.error <= hessian_error(W, Q_same, H) * 1.5  # the same format without feedback


def test_bad_shapes() -> None:
    from lowbit.recon import quantize_weight

    W, H = heavy_tailed((24, 32), 0), random_hessian(32, 1)
    with pytest.raises(ValueError, match="output dimension"):
        quantize_weight(W, H, SpQRColumnQuantizer(3))
    with pytest.raises(ValueError, match="input dimension"):
        quantize_weight(W[:16, :24], H[:24, :24], SpQRColumnQuantizer(3))

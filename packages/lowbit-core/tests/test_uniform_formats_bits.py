"""Uniform grids, the QuantizedWeight container and the one bit-accounting function."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report, model_bit_report, outlier_index_bits
from lowbit.core.formats import QuantizedWeight, SparseOutliers
from lowbit.core.testing import heavy_tailed, shapes
from lowbit.core.uniform import check_width, fake_quantize, minmax_params, quantize_affine

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(shape=shapes(), bits=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_fake_quantize_is_nearest_grid_value(shape: tuple[int, int, int], bits: int, seed: int) -> None:
    d_out, d_in, _ = shape
    w = heavy_tailed((d_out, d_in), seed)
    s, z = minmax_params(w, bits)
    q = fake_quantize(w, s[:, None], z[:, None], bits)
    grid = s[:, None] * (torch.arange(1 << bits)[None, :] - z[:, None])  # (rows, 2^b)
    nearest = (w[:, :, None] - grid[:, None, :]).abs().min(-1).values
    assert torch.allclose((w - q).abs(), nearest, atol=1e-6)
    # min-max covers the row: error at most half a step
    assert ((w - q).abs() <= s[:, None] / 2 + 1e-6).all()


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_error_bound_shrinks_with_bits(seed: int) -> None:
    w = heavy_tailed((16, 64), seed)
    steps = [minmax_params(w, b)[0] for b in range(1, 9)]
    for a, b in zip(steps, steps[1:], strict=False):
        assert (b < a).all()


@pytest.mark.parametrize("bits", [0, 9, 2.5, -1])
def test_width_checked(bits: object) -> None:
    with pytest.raises(ValueError, match="1..8"):
        check_width(bits)  # type: ignore[arg-type]


def _uniform(d_out: int, d_in: int, bits: int, gs: int | None, seed: int = 0) -> QuantizedWeight:
    w = heavy_tailed((d_out, d_in), seed)
    g = gs or d_in
    s, z = minmax_params(w.reshape(-1, g), bits)
    codes = quantize_affine(w.reshape(-1, g), s[:, None], z[:, None], bits).reshape(d_out, d_in)
    return QuantizedWeight("uniform", (d_out, d_in), codes.to(torch.uint8), bits,
                           scales=s.reshape(d_out, -1), zeros=z.reshape(d_out, -1), group_size=gs)


def test_uniform_dequantize_matches_formula() -> None:
    qw = _uniform(8, 32, 3, 8)
    w = qw.dequantize()
    for r in range(8):
        for c in range(32):
            g = c // 8
            assert math.isclose(float(w[r, c]), float(qw.scales[r, g] * (qw.codes[r, c] - qw.zeros[r, g])),
                                rel_tol=1e-6, abs_tol=1e-9)


def test_bit_report_uniform_formula() -> None:
    qw = _uniform(8, 32, 3, 8)
    r = bit_report(qw)
    assert r.parts["codes"] == 8 * 32 * 3
    assert r.parts["scales"] == 8 * 4 * 16
    assert r.parts["zeros"] == 8 * 4 * 3
    assert r.bits_per_weight == pytest.approx(3 + 16 / 8 + 3 / 8)
    per_row = bit_report(_uniform(8, 32, 4, None))
    assert per_row.bits_per_weight == pytest.approx(4 + (16 + 4) / 32)
    both = model_bit_report([qw, _uniform(8, 32, 4, None)])
    assert both.total_bits == r.total_bits + per_row.total_bits
    assert both.n_weights == 2 * 8 * 32


def test_g_idx_is_counted() -> None:
    qw = _uniform(8, 32, 3, 8)
    qw.g_idx = torch.arange(32).flip(0) // 8
    assert bit_report(qw).parts["g_idx"] == 32 * 2  # 4 groups -> 2 bits per column


def test_table_format_and_per_column_widths() -> None:
    d_out, d_in = 6, 5
    widths = torch.tensor([2, 4, 2, 3, 2])
    tables = torch.randn(d_in, 16)
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, 1 << int(b), (d_out,), generator=g) for b in widths], 1)
    qw = QuantizedWeight("table", (d_out, d_in), codes, widths, tables=tables)
    w = qw.dequantize()
    assert torch.equal(w, tables[torch.arange(d_in)[None, :], codes])
    r = bit_report(qw)
    assert r.parts["codes"] == d_out * int(widths.sum())
    assert r.parts["tables"] == 16 * int((2 ** widths).sum())


def test_outliers_reproduced_exactly_and_counted() -> None:
    qw = _uniform(16, 64, 2, 16)
    rows, cols = torch.tensor([0, 3, 15]), torch.tensor([5, 63, 0])
    vals = torch.tensor([7.5, -3.25, 1e3])
    qw.outliers = SparseOutliers(rows, cols, vals)
    w = qw.dequantize()
    assert torch.equal(w[rows, cols], vals)
    r = bit_report(qw)
    assert r.parts["outlier_values"] == 3 * 16
    # CSR: 3 * ceil(log2 64) + 17 * ceil(log2 4); CSC: 3 * 4 + 65 * 2
    assert r.parts["outlier_indices"] == min(3 * 6 + 17 * 2, 3 * 4 + 65 * 2)
    assert outlier_index_bits(SparseOutliers(rows[:0], cols[:0], vals[:0]), (16, 64)) == 0


def test_split_rows() -> None:
    qw = _uniform(12, 32, 3, 8)
    qw.outliers = SparseOutliers(torch.tensor([1, 7]), torch.tensor([0, 4]), torch.tensor([9.0, -9.0]))
    parts = qw.split_rows([4, 8])
    assert torch.equal(torch.cat([p.dequantize() for p in parts]), qw.dequantize())
    whole = bit_report(qw).parts
    for part in ("codes", "scales", "zeros", "outlier_values"):  # index pointers depend on the split
        assert sum(bit_report(p).parts[part] for p in parts) == whole[part]
    with pytest.raises(ValueError, match="add up"):
        qw.split_rows([4, 4])


def test_unknown_format() -> None:
    qw = _uniform(2, 8, 2, None)
    qw.format = "mystery"
    with pytest.raises(ValueError, match="unknown format"):
        qw.dequantize()

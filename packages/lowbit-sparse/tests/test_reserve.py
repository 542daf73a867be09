"""CLAQ dynamic outlier reservation: counts, exact reproduction by dequantize(), honest bit cost."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report
from lowbit.core.formats import QuantizedWeight
from lowbit.core.testing import heavy_tailed, weights
from lowbit.core.uniform import minmax_params, quantize_affine
from lowbit.sparse import (
    outlier_bits,
    outliers_from_mask,
    outliers_mask,
    reservation_fractions,
    reserve_column_outliers,
    reserved_counts,
)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def layers(draw: st.DrawFn):
    """A heavy-tailed fp16-representable weight and per-column reservation fractions."""
    d_out = draw(st.integers(1, 300))
    d_in = draw(st.integers(1, 24))
    W = heavy_tailed((d_out, d_in), draw(st.integers(0, 2**31 - 1))).half().float()
    if draw(st.booleans()):
        rho = reservation_fractions(W.abs().sum(0), rho_hi=0.014 * 10, rho_lo=0.004 * 10)
    else:
        rho = torch.tensor(draw(st.lists(st.floats(0.0, 1.0), min_size=d_in, max_size=d_in)),
                           dtype=torch.float64)
    rule = draw(st.sampled_from(["split", "claq_reference"]))
    return W, rho, rule


def _uniform_qw(W: torch.Tensor, mask: torch.Tensor, bits: int = 2) -> QuantizedWeight:
    """Per-row min-max grid fit on the non-reserved entries."""
    dense = W.masked_fill(mask, 0.0)
    scale, zero = minmax_params(dense, bits)
    codes = quantize_affine(dense, scale[:, None], zero[:, None], bits).to(torch.int64)
    return QuantizedWeight("uniform", tuple(W.shape), codes=codes, bits=bits, scales=scale[:, None],
                           zeros=zero[:, None])


def _table_qw(W: torch.Tensor, mask: torch.Tensor, bits: int = 2) -> QuantizedWeight:
    """Per-column table of 2^b levels spanning the non-reserved entries, nearest-level codes."""
    d_out, d_in = W.shape
    inf = torch.tensor(float("inf"))
    lo = torch.where(mask, inf, W).amin(0)
    hi = torch.where(mask, -inf, W).amax(0)
    lo, hi = torch.where(torch.isinf(lo), 0.0, lo), torch.where(torch.isinf(hi), 0.0, hi)
    t = torch.linspace(0, 1, 2**bits)
    tables = lo[:, None] + (hi - lo)[:, None] * t[None, :]
    codes = (W.T[:, :, None] - tables[:, None, :]).abs().argmin(-1).T
    return QuantizedWeight("table", (d_out, d_in), codes=codes, bits=bits, tables=tables)


@SETTINGS
@given(layers())
def test_counts_per_column_match_rho(layer):
    W, rho, rule = layer
    d_out = W.shape[0]
    mask, out = reserve_column_outliers(W, rho, rule=rule)
    per_col = mask.sum(0)
    if rule == "split":
        expected = [round(float(r) * d_out) for r in rho]
    else:
        expected = [0 if r == 0 else min(d_out, round(float(r) * d_out) + 1 + d_out
                                         - round((1 - float(r)) * d_out))
                    for r in rho]
    assert per_col.tolist() == expected
    assert out.nnz == int(mask.sum())
    assert torch.equal(outliers_mask(out, tuple(W.shape)), mask)


@SETTINGS
@given(layers())
def test_reserved_are_the_column_extremes(layer):
    W, rho, rule = layer
    mask, _ = reserve_column_outliers(W, rho, rule=rule)
    n_high, n_low = reserved_counts(rho, W.shape[0], rule)
    for i in range(W.shape[1]):
        col, keep = W[:, i], mask[:, i]
        if not keep.any() or keep.all():
            continue
        kept, rest = col[keep].sort().values, col[~keep]
        h = int(n_high[i])
        assert int(n_low[i]) + h == kept.numel()
        if h:
            assert kept[-h:].min() >= rest.max()
        if int(n_low[i]):
            assert kept[: kept.numel() - h].max() <= rest.min()


@SETTINGS
@given(layers(), st.sampled_from(["uniform", "table"]))
def test_dequantize_reproduces_reserved_entries_exactly(layer, fmt):
    W, rho, rule = layer
    mask, out = reserve_column_outliers(W, rho, rule=rule)
    qw = (_uniform_qw if fmt == "uniform" else _table_qw)(W, mask)
    plain = qw.dequantize()
    qw.outliers = out
    deq = qw.dequantize()
    assert torch.equal(deq[mask], W[mask])  # W is fp16-representable: exact
    assert torch.equal(deq[~mask], plain[~mask])


@SETTINGS
@given(weights(), st.floats(0.0, 0.2))
def test_float32_values_are_exact_without_rounding(W, r):
    mask, out = reserve_column_outliers(W, r, value_dtype=None)
    assert out.value_bits == 32 and out.values.dtype == torch.float32
    qw = _uniform_qw(W, mask)
    qw.outliers = out
    assert torch.equal(qw.dequantize()[mask], W[mask])


def _log2ceil(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


@SETTINGS
@given(layers())
def test_bit_cost_counts_values_at_16_bits_plus_indices(layer):
    W, rho, rule = layer
    d_out, d_in = W.shape
    mask, out = reserve_column_outliers(W, rho, rule=rule)
    qw = _uniform_qw(W, mask)
    base = bit_report(qw)
    qw.outliers = out
    rep = bit_report(qw)
    nnz = int(mask.sum())
    assert out.value_bits == 16
    assert rep.parts["outlier_values"] == 16 * nnz
    ptr = _log2ceil(nnz + 1)
    csr = nnz * _log2ceil(d_in) + (d_out + 1) * ptr
    csc = nnz * _log2ceil(d_out) + (d_in + 1) * ptr
    assert rep.parts["outlier_indices"] == (min(csr, csc) if nnz else 0)
    extra = 16 * nnz + rep.parts["outlier_indices"]
    assert rep.total_bits == pytest.approx(base.total_bits + extra)
    ob = outlier_bits(out, (d_out, d_in))
    assert ob["outlier_values"] == rep.parts["outlier_values"]
    assert ob["outlier_indices"] == rep.parts["outlier_indices"]
    assert ob["bits_per_weight"] == pytest.approx(extra / (d_out * d_in))


@SETTINGS
@given(st.integers(1, 500), st.integers(0, 2**31 - 1))
def test_reservation_fractions_top_10_percent(d_in, seed):
    scores = torch.randint(0, 4, (d_in,), generator=torch.Generator().manual_seed(seed))
    rho = reservation_fractions(scores)
    top = rho == 0.014
    assert int(top.sum()) == round(0.1 * d_in)
    assert set(rho.tolist()) <= {0.014, 0.004}
    if top.any() and (~top).any():
        assert scores[top].min() >= scores[~top].max()
    # ties to the lower index
    order = torch.sort(scores, descending=True, stable=True).indices
    assert set(order[: round(0.1 * d_in)].tolist()) == set(torch.nonzero(top).flatten().tolist())


def test_reference_counts_for_llama_columns():
    hi, lo = reserved_counts(torch.tensor([0.004, 0.014, 0.0]), 4096, "claq_reference")
    assert hi.tolist() == [17, 58, 0] and lo.tolist() == [16, 57, 0]
    hi, lo = reserved_counts(torch.tensor([0.004, 0.014]), 4096, "split")
    assert hi.tolist() == [8, 29] and lo.tolist() == [8, 28]


def test_outliers_from_mask_and_errors():
    W = torch.arange(6.0).reshape(2, 3)
    mask = torch.tensor([[True, False, False], [False, False, True]])
    out = outliers_from_mask(W, mask)
    assert out.rows.tolist() == [0, 1] and out.cols.tolist() == [0, 2]
    assert out.values.dtype == torch.float16 and out.values.tolist() == [0.0, 5.0]
    with pytest.raises(ValueError, match="bool"):
        outliers_from_mask(W, mask.int())
    with pytest.raises(ValueError, match="rule"):
        reserve_column_outliers(W, 0.5, rule="nope")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reserve_column_outliers(W, 1.5)
    with pytest.raises(ValueError, match="shape"):
        reserve_column_outliers(W, torch.tensor([0.1, 0.2]))
    assert outlier_bits(outliers_from_mask(W, torch.zeros_like(mask)), (2, 3))["total"] == 0.0

"""CMPQ's activation- and quantization-based outliers (arXiv 2410.13056): selection, storage, cost."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report
from lowbit.core.formats import QuantizedWeight
from lowbit.core.testing import heavy_tailed
from lowbit.sparse import (
    activation_outlier_mask,
    cmpq_outlier_bits,
    cmpq_outlier_counts,
    outlier_bits,
    outliers_from_mask,
    quantization_outlier_mask,
)

SETTINGS = settings(max_examples=60, deadline=None)


def _round_to_grid(W: torch.Tensor, step: float) -> torch.Tensor:
    """A stand-in quantizer: round to multiples of ``step`` (any W_hat will do for the masks)."""
    return torch.round(W / step) * step


def _table_qweight(W: torch.Tensor, W_hat: torch.Tensor, bits: int = 2) -> QuantizedWeight:
    """A ``table`` QuantizedWeight that dequantizes to ``W_hat`` where W_hat takes few values per column."""
    d_out, d_in = W.shape
    tables = torch.zeros(d_in, 2**bits)
    codes = torch.zeros(d_out, d_in, dtype=torch.int64)
    for j in range(d_in):
        vals = torch.unique(W_hat[:, j])[: 2**bits]
        tables[j, : vals.numel()] = vals
        codes[:, j] = (W_hat[:, j, None] - vals[None]).abs().argmin(1)
    return QuantizedWeight("table", (d_out, d_in), codes, torch.full((d_in,), bits), tables=tables)


@SETTINGS
@given(d_out=st.integers(1, 80), d_in=st.integers(1, 80), fa=st.floats(0, 0.3), fq=st.floats(0, 0.3),
       seed=st.integers(0, 2**31 - 1))
def test_masks_have_exact_counts_and_are_disjoint(d_out, d_in, fa, fq, seed) -> None:
    W = heavy_tailed((d_out, d_in), seed)
    scores = torch.rand(d_in, generator=torch.Generator().manual_seed(seed))
    n_ch, n_q = cmpq_outlier_counts((d_out, d_in), fa, fq)
    act = activation_outlier_mask(scores, d_out, fa)
    assert act.shape == (d_out, d_in)
    cols = act.all(0)
    assert (act.any(0) == cols).all() and int(cols.sum()) == n_ch  # whole channels
    if 0 < n_ch < d_in:  # the chosen channels have the largest scores
        assert scores[cols].min() >= scores[~cols].max()
    quant = quantization_outlier_mask(W, _round_to_grid(W, 0.05), k=n_q, exclude=act)
    assert int(quant.sum()) == n_q and not (quant & act).any()
    assert int((act | quant).sum()) == n_ch * d_out + n_q


def test_quantization_outliers_are_the_largest_residuals() -> None:
    W = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    W_hat = W.clone()
    W_hat[0, 2] += 0.5
    W_hat[1, 0] -= 0.3
    W_hat[1, 1] += 0.9  # the largest residual, but in an excluded channel
    exclude = torch.zeros(2, 3, dtype=torch.bool)
    exclude[:, 1] = True
    m = quantization_outlier_mask(W, W_hat, k=2, exclude=exclude)
    assert m.nonzero().tolist() == [[0, 2], [1, 0]]
    m = quantization_outlier_mask(W, W_hat, k=1)
    assert m.nonzero().tolist() == [[1, 1]]
    assert quantization_outlier_mask(W, W_hat, k=10, exclude=exclude).sum() == 4  # capped
    with pytest.raises(ValueError, match="exactly one"):
        quantization_outlier_mask(W, W_hat)
    with pytest.raises(ValueError, match="shape"):
        quantization_outlier_mask(W, W_hat[:, :2], k=1)


def test_activation_outliers_take_top_channels_ties_to_lower_index() -> None:
    scores = torch.tensor([1.0, 3.0, 3.0, 0.5])
    m = activation_outlier_mask(scores, 2, k=2)
    assert m.tolist() == [[False, True, True, False]] * 2
    m = activation_outlier_mask(scores, 3, k=1)
    assert m[:, 1].all() and m.sum() == 3
    assert activation_outlier_mask(scores, 2, 0.0).sum() == 0


@SETTINGS
@given(d_out=st.integers(1, 300), d_in=st.integers(1, 300), frac=st.floats(0, 1), seed=st.integers(0, 100))
def test_cost_from_counts_equals_bit_report(d_out, d_in, frac, seed) -> None:
    """The cost known before quantizing equals what bit_report counts for the stored outliers."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(d_out, d_in, generator=g) < frac
    W = torch.randn(d_out, d_in, generator=g)
    out = outliers_from_mask(W, mask)
    expected = outlier_bits(out, (d_out, d_in))["bits_per_weight"]
    assert cmpq_outlier_bits((d_out, d_in), int(mask.sum())) == pytest.approx(expected, rel=0, abs=1e-12)


@SETTINGS
@given(d_out=st.integers(2, 64), d_in=st.integers(2, 64), fa=st.floats(0, 0.2), fq=st.floats(0, 0.2),
       seed=st.integers(0, 2**31 - 1))
def test_extracted_outliers_are_reproduced_exactly(d_out, d_in, fa, fq, seed) -> None:
    """dequantize() returns every extracted weight as stored (fp16), the rest from the tables; the
    report prices them exactly as cmpq_outlier_bits predicted."""
    W = heavy_tailed((d_out, d_in), seed)
    scores = torch.rand(d_in, generator=torch.Generator().manual_seed(seed))
    W_hat = _round_to_grid(W.clamp(-0.02, 0.02), 0.02)  # at most 3 values a column: a 2-bit table
    qw = _table_qweight(W, W_hat)
    assert torch.equal(qw.dequantize(), W_hat)
    n_ch, n_q = cmpq_outlier_counts((d_out, d_in), fa, fq)
    act = activation_outlier_mask(scores, d_out, k=n_ch)
    keep = act | quantization_outlier_mask(W, qw.dequantize(), k=n_q, exclude=act)
    qw.outliers = outliers_from_mask(W, keep)
    assert qw.outliers.values.dtype == torch.float16 and qw.outliers.value_bits == 16
    D = qw.dequantize()
    assert torch.equal(D[keep], W[keep].half().float())
    assert torch.equal(D[~keep], W_hat[~keep])
    report = bit_report(qw).per_weight()
    predicted = cmpq_outlier_bits((d_out, d_in), n_ch * d_out + n_q)
    assert report["outlier_values"] + report["outlier_indices"] == pytest.approx(predicted, abs=1e-12)


def test_counts_and_bad_input() -> None:
    assert cmpq_outlier_counts((576, 576), 0.005, 0.0025) == (3, 829)
    assert cmpq_outlier_counts((4, 10), 1.0, 0.5) == (10, 0)  # nothing left outside the channels
    assert cmpq_outlier_bits((10, 10), 0) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        cmpq_outlier_counts((4, 4), 1.5, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        cmpq_outlier_bits((4, 4), -1)
    with pytest.raises(ValueError, match="1-D"):
        activation_outlier_mask(torch.rand(2, 2), 4, k=1)

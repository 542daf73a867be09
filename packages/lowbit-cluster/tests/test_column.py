"""KMeansColumnQuantizer: tables reproduce its values, widths and reserved entries are honoured."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.cluster import KMeansColumnQuantizer
from lowbit.core.bits import bit_report
from lowbit.core.testing import heavy_tailed
from lowbit.core.uniform import fake_quantize, minmax_params


def _round_to_nearest(W: torch.Tensor, quantizer: KMeansColumnQuantizer) -> tuple[torch.Tensor, object]:
    """The quantizer applied column by column with no feedback (the GPTQ loop lives in lowbit.recon)."""
    quantizer.prepare(W, torch.arange(W.shape[1]))
    Q = torch.stack([quantizer(W, j, j, None) for j in range(W.shape[1])], 1)
    return Q, quantizer.result(Q)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), d_out=st.integers(20, 80))
def test_tables_reproduce_values_and_widths(seed: int, d_out: int) -> None:
    W = heavy_tailed((d_out, 12), seed)
    widths = torch.tensor([2, 3, 4] * 4)
    Q, qw = _round_to_nearest(W, KMeansColumnQuantizer(widths, seed=seed))
    assert torch.equal(qw.dequantize(), Q)
    assert (qw.codes.long() < (1 << widths)[None, :]).all()
    for c in range(12):  # at most 2^b distinct values per column, each a table entry
        assert len(torch.unique(Q[:, c])) <= 1 << int(widths[c])
    r = bit_report(qw)
    assert r.parts["codes"] == d_out * int(widths.sum())
    assert r.parts["tables"] == 16 * int((1 << widths).sum())


def test_reserved_entries_exact_and_excluded_from_the_fit() -> None:
    W = heavy_tailed((64, 8), 0)
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask[W.abs().argmax(0), torch.arange(8)] = True
    W16 = W.half().float()  # values fp16 can hold, so the stored outliers are exact
    Q, qw = _round_to_nearest(W16, KMeansColumnQuantizer(2, mask))
    assert torch.equal(qw.dequantize()[mask], W16[mask])
    assert qw.outliers is not None and qw.outliers.nnz == 8
    assert bit_report(qw).parts["outlier_values"] == 8 * 16
    # the reserved extreme did not pull a centroid: tables stay inside the remaining values' range
    rest = W16.masked_fill(mask, float("nan"))
    assert (qw.tables.float()[:, :4].T <= torch.nan_to_num(rest, nan=-1e9).amax(0) + 1e-3).all()


def test_kmeans_tables_beat_uniform_grid_on_heavy_tails() -> None:
    W = heavy_tailed((256, 16), 3)
    Q, _ = _round_to_nearest(W, KMeansColumnQuantizer(3))
    s, z = minmax_params(W.T, 3)
    U = fake_quantize(W.T, s[:, None], z[:, None], 3).T
    assert ((W - Q) ** 2).sum() < ((W - U) ** 2).sum()

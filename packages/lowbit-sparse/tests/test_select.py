"""Selection rules: counts, ordering and determinism."""

from __future__ import annotations

import pathlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit import sparse
from lowbit.core.testing import weights
from lowbit.sparse import (
    column_extremes_mask,
    count_from_fraction,
    relative_threshold_mask,
    topk_magnitude,
    topk_mask,
)

SETTINGS = settings(max_examples=80, deadline=None)


@SETTINGS
@given(weights(), st.floats(0.0, 1.0))
def test_topk_magnitude_global(W, frac):
    m = topk_magnitude(W, frac)
    k = count_from_fraction(frac, W.numel())
    assert m.shape == W.shape and int(m.sum()) == k
    a = W.abs()
    if 0 < k < W.numel():
        assert a[m].min() >= a[~m].max()


@SETTINGS
@given(weights(), st.floats(0.0, 1.0), st.sampled_from([0, 1]))
def test_topk_magnitude_per_slice(W, frac, dim):
    m = topk_magnitude(W, frac, dim=dim)
    k = count_from_fraction(frac, W.shape[dim])
    assert (m.sum(dim) == k).all()
    a = W.abs()
    for i in range(W.shape[1 - dim]):
        sel = a.select(1 - dim, i)[m.select(1 - dim, i)]
        rest = a.select(1 - dim, i)[~m.select(1 - dim, i)]
        if sel.numel() and rest.numel():
            assert sel.min() >= rest.max()


def test_topk_ties_go_to_lower_index():
    s = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])
    assert topk_mask(s, k=2).tolist() == [False, True, True, False, False]
    s2 = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert topk_mask(s2, k=1, dim=0).tolist() == [[True, True], [False, False], [False, False]]
    with pytest.raises(ValueError, match="exactly one"):
        topk_mask(s)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        topk_mask(s, 1.5)


def test_count_rounds_half_to_even_like_the_reference():
    assert count_from_fraction(0.1, 25) == round(2.5) == 2
    assert count_from_fraction(0.1, 35) == round(3.5) == 4
    assert count_from_fraction(0.1, 4096) == 410


def test_relative_threshold_mask():
    s = torch.tensor([[1.0, 1.0, 10.0], [0.0, 0.0, 0.0]])
    assert relative_threshold_mask(s, 2.0).tolist() == [[False, False, True], [False, False, False]]
    assert relative_threshold_mask(s, 0.5, dim=1).tolist() == [[False, False, True], [False, False, False]]


@SETTINGS
@given(weights(), st.data())
def test_column_extremes_mask(W, data):
    d_out, d_in = W.shape
    hi = torch.tensor(data.draw(st.lists(st.integers(0, d_out), min_size=d_in, max_size=d_in)))
    lo = torch.tensor(data.draw(st.lists(st.integers(0, d_out), min_size=d_in, max_size=d_in)))
    m = column_extremes_mask(W, hi, lo)
    assert (m.sum(0) == torch.minimum(hi + lo, torch.tensor(d_out))).all()
    for i in range(d_in):
        col, keep = W[:, i], m[:, i]
        if keep.all() or not keep.any():
            continue
        rest = col[~keep]
        kept = col[keep].sort().values
        h = min(int(hi[i]), d_out)
        top, bottom = kept[kept.numel() - h:], kept[:kept.numel() - h]
        if top.numel():
            assert top.min() >= rest.max()
        if bottom.numel():
            assert bottom.max() <= rest.min()


def test_namespace_package():
    import lowbit

    assert sparse.__version__ == "0.1.0"
    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "lowbit"
    assert not (src / "__init__.py").exists()
    assert getattr(lowbit, "__file__", None) is None  # PEP 420 namespace

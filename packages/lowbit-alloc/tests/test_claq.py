"""CLAQ's outlier score and width pairs (arXiv 2405.17233)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit import alloc
from lowbit.alloc import (
    allocate_bits,
    claq_allocate,
    claq_widths,
    hessian_weighted_scores,
    outlier_counts,
    outlier_threshold,
    table_overhead,
)
from lowbit.core.testing import heavy_tailed, weights

SETTINGS = settings(max_examples=60, deadline=None)


def _brute_counts(W: torch.Tensor, t: float) -> list[int]:
    a = np.abs(W.numpy().astype(np.float64))
    thr = t * a.mean()
    d_out, d_in = a.shape
    return [sum(1 for j in range(d_out) if a[j, i] >= thr) for i in range(d_in)]


@SETTINGS
@given(weights(), st.sampled_from([1.0, 3.0, 5.0, 13.0]))
def test_outlier_counts_match_brute_force(W, t):
    c = outlier_counts(W, t)
    assert c.shape == (W.shape[1],) and c.dtype == torch.int64
    assert c.tolist() == _brute_counts(W, t)


def test_outlier_threshold_is_inclusive():
    W = torch.zeros(13, 2)
    W[3, 1] = -13.0  # mean |W| = 0.5, threshold 13 * 0.5 = 6.5
    W[5, 0] = 0.0
    assert float(outlier_threshold(W)) == 6.5
    assert outlier_counts(W).tolist() == [0, 1]
    W = torch.zeros(13, 1)
    W[0, 0] = 13.0  # mean 1, threshold exactly 13: counts
    assert outlier_counts(W).tolist() == [1]
    assert outlier_counts(W.half()).tolist() == [1]


def test_claq_widths():
    assert claq_widths(2.0) == (2, 4)
    assert claq_widths(2.1) == (2, 4)
    assert claq_widths(2.999) == (2, 4)
    assert claq_widths(3) == (3, 4)
    assert claq_widths(4.0) == (3, 4)
    for bad in (1.99, 4.01):
        with pytest.raises(ValueError, match=r"\[2, 4\]"):
            claq_widths(bad)


@SETTINGS
@given(st.integers(1, 40), st.integers(8, 64), st.integers(0, 2**31 - 1))
def test_b21_gives_top_5_percent_4_bits(m, d_out, seed):
    d_in = 20 * m
    W = heavy_tailed((d_out, d_in), seed, outlier_frac=0.02)
    w = claq_allocate(W, 2.1)
    assert int((w == 4).sum()) == m and int((w == 2).sum()) == d_in - m
    counts = outlier_counts(W)
    order = torch.sort(counts, descending=True, stable=True).indices
    assert set(order[:m].tolist()) == set(torch.nonzero(w == 4).flatten().tolist())


@SETTINGS
@given(st.floats(3.0, 4.0), st.integers(1, 300))
def test_three_to_four_bits(b, n):
    w = allocate_bits(torch.arange(n, dtype=torch.float32), claq_widths(b), b)
    assert int((w == 4).sum()) == int(np.floor((b - 3) * n + 1e-7))
    assert set(w.tolist()) <= {3, 4}


def test_claq_allocate_with_tables_in_budget():
    W = heavy_tailed((256, 100), 0)
    w = claq_allocate(W, 2.5, overhead=table_overhead(256))
    # 2-bit columns cost 2.25, 4-bit 5.0 -> floor(100 * 0.25 / 2.75) = 9 columns at 4 bits
    assert int((w == 4).sum()) == 9


def test_hessian_weighted_scores():
    W = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    u = torch.tensor([0.5, 2.0])
    s = hessian_weighted_scores(W, u)
    assert torch.allclose(s, torch.tensor([(1 + 9) / 2 / 0.25, (4 + 16) / 2 / 4.0]))
    with pytest.raises(ValueError, match="columns"):
        hessian_weighted_scores(W, torch.ones(3))


def test_namespace_package():
    import lowbit

    assert alloc.__version__ == "0.1.0"
    src = pathlib.Path(__file__).resolve().parents[1] / "src" / "lowbit"
    assert not (src / "__init__.py").exists()
    assert getattr(lowbit, "__file__", None) is None  # PEP 420 namespace

"""CMPQ's activation-based channel precision under a total budget (arXiv 2410.13056)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.alloc import (
    CMPQ_WIDTHS,
    average_bits,
    channel_scores,
    cmpq_allocate,
    cmpq_feasible_range,
    table_overhead,
)
from lowbit.core.calib import ActStats

SETTINGS = settings(max_examples=80, deadline=None)


def _stats(x: torch.Tensor) -> ActStats:
    s = ActStats.empty(x.shape[-1])
    s.update(x)
    return s


def test_channel_scores_match_their_definitions() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 7, generator=g) * torch.arange(1, 8)
    s = _stats(x)
    flat = x.reshape(-1, 7).double()
    torch.testing.assert_close(channel_scores(s), flat.pow(2).sum(0).sqrt().float())
    torch.testing.assert_close(channel_scores(s, "mean_abs"), flat.abs().mean(0).float())
    torch.testing.assert_close(channel_scores(s, "absmax"), flat.abs().amax(0).float())
    assert channel_scores(s).argsort().tolist() == list(range(7))  # channel j scaled by j + 1
    with pytest.raises(ValueError, match="unknown statistic"):
        channel_scores(s, "l1")


def _step(d_out: int, widths=CMPQ_WIDTHS) -> float:
    o = table_overhead(d_out)
    costs = [b + o(b) for b in widths]
    return max(b - a for a, b in zip(costs, costs[1:], strict=False))


@SETTINGS
@given(d_out=st.integers(64, 2048), d_in=st.integers(1, 700), u=st.floats(0, 1), r=st.floats(0, 0.5),
       fixed_frac=st.floats(0, 0.05), seed=st.integers(0, 2**31 - 1))
def test_budget_is_met_within_one_channel(d_out, d_in, u, r, fixed_frac, seed) -> None:
    """Codes + tables + reserved bits land in (B - step / d_in, B], for any feasible total B."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(d_in, generator=g)
    fixed = torch.rand(d_in, generator=g) < fixed_frac
    lo, hi = cmpq_feasible_range(d_out, reserved_bits=r)
    n_fixed = int(fixed.sum())
    hi = (n_fixed * (lo - r) + (d_in - n_fixed) * (hi - r)) / d_in + r  # pinned channels cap the top
    budget = lo + u * (hi - lo)
    w = cmpq_allocate(scores, budget, d_out, reserved_bits=r, fixed_low=fixed)
    assert w.shape == (d_in,) and w.dtype == torch.int64
    assert set(w.tolist()) <= set(CMPQ_WIDTHS)
    assert (w[fixed] == min(CMPQ_WIDTHS)).all()
    total = average_bits(w, table_overhead(d_out)) + r
    assert total <= budget + 1e-9
    assert budget - total < _step(d_out) / d_in + 1e-9
    free = ~fixed
    if free.any():  # among the free channels a higher score never gets a lower width
        s, b = scores[free], w[free]
        order = s.argsort()
        assert (b[order].diff() >= 0).all()


@SETTINGS
@given(d_out=st.sampled_from([192, 576, 1536]), d_in=st.sampled_from([576, 1536]), budget=st.floats(2, 4))
def test_realistic_layers_are_exact_to_a_hundredth(d_out, d_in, budget) -> None:
    w = cmpq_allocate(torch.rand(d_in), budget, d_out, reserved_bits=0.2)
    total = average_bits(w, table_overhead(d_out)) + 0.2
    assert 0 <= budget - total < 0.01


def test_top_channels_get_the_higher_width() -> None:
    scores = torch.tensor([0.1, 5.0, 0.3, 2.0, 0.2, 1.0, 0.0, 0.4])
    d_out = 2**20  # tables of 2^(b - 16) bits per weight: exact in binary
    expected = torch.tensor([2, 3, 2, 3, 2, 3, 2, 3])  # the top half by score at 3 bits
    budget = average_bits(expected, table_overhead(d_out))
    assert budget == pytest.approx(2.5, abs=1e-3)
    assert cmpq_allocate(scores, budget, d_out).tolist() == expected.tolist()
    pinned = torch.zeros(8, dtype=torch.bool)
    pinned[1] = True  # the top channel is stored elsewhere: it gets 1 bit, the others share the rest
    expected = torch.tensor([2, 1, 3, 3, 3, 3, 2, 3])
    budget = average_bits(expected, table_overhead(d_out))
    assert cmpq_allocate(scores, budget, d_out, fixed_low=pinned).tolist() == expected.tolist()


def test_infeasible_budgets_are_rejected() -> None:
    lo, hi = cmpq_feasible_range(576, reserved_bits=0.3)
    assert lo == pytest.approx(1 + 2 * 16 / 576 + 0.3) and hi == pytest.approx(4 + 16 * 16 / 576 + 0.3)
    scores = torch.rand(576)
    with pytest.raises(ValueError, match="infeasible"):
        cmpq_allocate(scores, lo - 0.01, 576, reserved_bits=0.3)
    with pytest.raises(ValueError, match="infeasible"):
        cmpq_allocate(scores, hi + 0.01, 576, reserved_bits=0.3)
    with pytest.raises(ValueError, match="infeasible"):  # outliers alone over the budget
        cmpq_allocate(scores, 2.0, 576, reserved_bits=1.5)
    with pytest.raises(ValueError, match="infeasible"):  # 2.0 total needs 1-bit channels
        cmpq_allocate(scores, 2.0, 576, widths=(2, 3, 4))
    w = cmpq_allocate(scores, lo, 576, reserved_bits=0.3)  # the ends themselves are fine
    assert (w == 1).all()
    w = cmpq_allocate(scores, hi, 576, reserved_bits=0.3)
    assert (w == 4).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="1-D"):
        cmpq_allocate(torch.rand(3, 4), 3.0, 64)
    with pytest.raises(ValueError, match="fixed_low"):
        cmpq_allocate(torch.rand(4), 3.0, 640, fixed_low=torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="finite"):
        cmpq_allocate(torch.tensor([1.0, math.nan]), 3.0, 640)

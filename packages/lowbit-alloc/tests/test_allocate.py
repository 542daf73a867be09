"""allocate_bits: budgets met exactly, infeasible budgets rejected, monotone in the score."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.alloc import (
    BUDGET_TOL,
    allocate_bits,
    average_bits,
    feasible_range,
    rank_descending,
    table_overhead,
    width_costs,
)
from lowbit.core.bits import bit_report
from lowbit.core.formats import QuantizedWeight

SETTINGS = settings(max_examples=150, deadline=None)


@st.composite
def scores(draw: st.DrawFn, max_n: int = 300) -> torch.Tensor:
    """Random scores, sometimes with many ties (small integer range)."""
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    if draw(st.booleans()):
        return torch.randint(0, draw(st.integers(1, 5)), (n,), generator=g)
    return torch.randn(n, generator=g, dtype=torch.float64)


@st.composite
def overheads(draw: st.DrawFn, ws: list[int]):
    kind = draw(st.sampled_from(["none", "table", "mapping"]))
    if kind == "none":
        return None
    if kind == "table":
        return table_overhead(draw(st.integers(max(2 ** max(ws), 1), 8192)))
    # a random overhead that keeps costs increasing: nondecreasing extras
    extras = sorted(draw(st.lists(st.floats(0.0, 0.5), min_size=len(ws), max_size=len(ws))))
    return dict(zip(sorted(ws), extras, strict=False))


@st.composite
def problems(draw: st.DrawFn):
    s = draw(scores())
    ws = draw(st.lists(st.integers(1, 8), min_size=1, max_size=4, unique=True))
    oh = draw(overheads(ws))
    lo, hi = feasible_range(ws, oh)
    u = draw(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.5])))
    budget = lo + u * (hi - lo)
    if draw(st.booleans()) and len(ws) > 1:  # budgets that are exact rational averages
        k = draw(st.integers(0, s.numel()))
        _, costs = width_costs(ws, oh)
        budget = ((s.numel() - k) * costs[0] + k * costs[1]) / s.numel()
    return s, ws, oh, budget


def _bracket(ws, oh, budget):
    sw, costs = width_costs(ws, oh)
    j = max(i for i, c in enumerate(costs) if c <= budget + BUDGET_TOL)
    return sw, costs, j


@SETTINGS
@given(problems())
def test_budget_met_exactly(problem):
    s, ws, oh, budget = problem
    w = allocate_bits(s, ws, budget, overhead=oh)
    n = s.numel()
    assert w.shape == (n,) and w.dtype == torch.int64
    assert set(w.tolist()) <= set(ws)
    achieved = average_bits(w, oh)
    assert achieved <= budget + BUDGET_TOL + 1e-12
    sw, costs, j = _bracket(ws, oh, budget)
    if j == len(sw) - 1:
        assert (w == sw[-1]).all()
        return
    step = (costs[j + 1] - costs[j]) / n
    assert budget - achieved < step + 1e-12
    # the brief's looser bound
    assert abs(achieved - budget) <= (costs[-1] - costs[0]) / n + 1e-9
    # only the bracketing pair is used, and one more high unit would break the budget
    assert set(w.tolist()) <= {sw[j], sw[j + 1]}
    k = int((w == sw[j + 1]).sum())
    if k < n:
        assert ((n - k - 1) * costs[j] + (k + 1) * costs[j + 1]) / n > budget + BUDGET_TOL


@SETTINGS
@given(scores(), st.integers(1, 6), st.integers(0, 3), st.data())
def test_consecutive_widths_reach_every_multiple_of_1_over_n(s, lo, span, data):
    """No overhead and consecutive integer widths: the best achievable average overall, floor(nB)/n."""
    ws = list(range(lo, lo + span + 1))
    n = s.numel()
    total = data.draw(st.integers(lo * n, (lo + span) * n))
    budget = total / n + data.draw(st.floats(0.0, 0.999)) / n
    budget = min(budget, float(lo + span))
    w = allocate_bits(s, ws, budget)
    assert int(w.sum()) == math.floor(budget * n + 1e-7)


@SETTINGS
@given(problems())
def test_higher_scores_never_get_lower_widths(problem):
    s, ws, oh, budget = problem
    w = allocate_bits(s, ws, budget, overhead=oh)
    sf = s.double()
    higher = sf[:, None] > sf[None, :]
    assert not (higher & (w[:, None] < w[None, :])).any()


@SETTINGS
@given(problems())
def test_ties_go_to_the_lower_index(problem):
    s, ws, oh, budget = problem
    w = allocate_bits(s, ws, budget, overhead=oh)
    equal = s[:, None] == s[None, :]
    i_lt_j = torch.ones_like(equal).triu(1)
    assert not (equal & i_lt_j & (w[:, None] < w[None, :])).any()


@SETTINGS
@given(problems(), st.floats(1e-6, 3.0), st.booleans())
def test_infeasible_budgets_raise(problem, gap, below):
    s, ws, oh, _ = problem
    lo, hi = feasible_range(ws, oh)
    budget = lo - gap if below else hi + gap
    with pytest.raises(ValueError, match="feasible range"):
        allocate_bits(s, ws, budget, overhead=oh)


@SETTINGS
@given(scores(), st.integers(1, 4), st.integers(1, 4), st.floats(0.0, 1.0))
def test_permutation_equivariant_for_distinct_scores(s, lo, gap, u):
    s = torch.randperm(s.numel(), generator=torch.Generator().manual_seed(s.numel())).double()
    ws = [lo, lo + gap]
    budget = lo + u * gap
    w = allocate_bits(s, ws, budget)
    perm = torch.randperm(s.numel(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(allocate_bits(s[perm], ws, budget), w[perm])


@SETTINGS
@given(scores(max_n=64), st.sampled_from([(2, 3), (3, 4), (2, 4), (2, 3, 4)]),
       st.integers(16, 512), st.floats(0.0, 1.0))
def test_table_overhead_matches_core_bit_report(s, ws, d_out, u):
    """Budget with tables inside == codes + tables bits per weight by lowbit.core.bits.bit_report."""
    oh = table_overhead(d_out)
    lo, hi = feasible_range(ws, oh)
    budget = lo + u * (hi - lo)
    w = allocate_bits(s, ws, budget, overhead=oh)
    n = s.numel()
    qw = QuantizedWeight("table", (d_out, n), codes=torch.zeros(d_out, n, dtype=torch.int64), bits=w,
                         tables=torch.zeros(n, 2 ** max(ws)))
    rep = bit_report(qw)
    assert rep.bits_per_weight == pytest.approx(average_bits(w, oh), rel=1e-12)
    assert rep.bits_per_weight <= budget + 1e-9


def test_examples():
    s = torch.tensor([0.5, 3.0, 1.0, 2.0])
    assert allocate_bits(s, (2, 4), 2.0).tolist() == [2, 2, 2, 2]
    assert allocate_bits(s, (2, 4), 2.5).tolist() == [2, 4, 2, 2]
    assert allocate_bits(s, (2, 4), 2.99).tolist() == [2, 4, 2, 2]
    assert allocate_bits(s, (2, 4), 3.0).tolist() == [2, 4, 2, 4]
    assert allocate_bits(s, (2, 4), 4.0).tolist() == [4, 4, 4, 4]
    assert allocate_bits(s, (2, 3, 4), 3.5).tolist() == [3, 4, 3, 4]
    assert allocate_bits(s, (4, 3, 2, 3), 2.25).tolist() == [2, 3, 2, 2]
    assert allocate_bits(torch.zeros(4), (2, 4), 3.0).tolist() == [4, 4, 2, 2]
    assert allocate_bits(s, (3,), 3.0).tolist() == [3, 3, 3, 3]


def test_fractional_budget_with_round_off():
    """2.1 is not exact in binary; a budget that is exactly achievable is still achieved."""
    for n in (10, 20, 100, 4096, 11008):
        for b in (2.1, 2.2, 2.3, 2.6, 3.3, 3.7):
            ws = (2, 4) if b < 3 else (3, 4)
            w = allocate_bits(torch.arange(n), ws, b)
            k = int((w == 4).sum())
            f = (b - ws[0]) / (4 - ws[0])
            assert k == math.floor(round(n * f, 6))


def test_bad_inputs():
    s = torch.ones(4)
    with pytest.raises(ValueError, match="1-D"):
        allocate_bits(torch.ones(2, 2), (2, 4), 3)
    with pytest.raises(ValueError, match="finite"):
        allocate_bits(torch.tensor([1.0, float("nan")]), (2, 4), 3)
    with pytest.raises(ValueError, match="empty"):
        allocate_bits(s, (), 3)
    with pytest.raises(ValueError, match="positive integers"):
        allocate_bits(s, (2, 3.5), 3)
    with pytest.raises(ValueError, match="increase"):
        allocate_bits(s, (2, 3), 3, overhead={2: 1.5, 3: 0.0})
    with pytest.raises(ValueError, match="no entry"):
        allocate_bits(s, (2, 3), 2.5, overhead={2: 0.1})
    with pytest.raises(ValueError, match=r"feasible range is \[2.0, 4.0\]"):
        allocate_bits(s, (2, 4), 4.5)
    with pytest.raises(ValueError, match="feasible range"):
        allocate_bits(s, (3,), 3.5)


def test_rank_descending_is_stable():
    assert rank_descending(torch.tensor([1, 3, 3, 0, 3])).tolist() == [1, 2, 4, 0, 3]

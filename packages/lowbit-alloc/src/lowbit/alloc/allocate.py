"""Exact fractional bit budgets: from per-unit scores to per-unit integer widths.

A *unit* is whatever gets one width: an input column for CLAQ (arXiv 2405.17233) and CMPQ
(arXiv 2410.13056), a group or a layer elsewhere. All units hold the same number of weights, so
a unit of width ``b`` costs

    c(b) = b + o(b)        bits per weight,

where ``o(b)`` is an optional per-weight overhead that depends on the width, e.g. a per-column
lookup table of ``2^b`` fp16 entries shared by ``d_out`` weights: ``o(b) = 2^b * 16 / d_out``
(:func:`table_overhead`). Costs must increase strictly with the width. The average cost of an
allocation ``w`` (``n`` units) is ``A(w) = (1/n) sum_i c(w_i)``; for a table-format layer with
``overhead=table_overhead(d_out)`` it equals the codes-plus-tables bits per weight that
:func:`lowbit.core.bits.bit_report` reports. Costs that do not depend on the width (outliers,
scales shared by all widths) are not the allocator's business: subtract them from the budget.

The rule (:func:`allocate_bits`):

1. Sort the distinct widths ``b_1 < ... < b_m`` (costs ``c_1 < ... < c_m``). The feasible range
   is ``[c_1, c_m]``; a budget ``B`` outside it (beyond a tolerance of :data:`BUDGET_TOL`) raises
   ``ValueError`` naming the range.
2. Pick the adjacent pair bracketing the budget: the largest ``j`` with ``c_j <= B``; if
   ``j = m`` every unit gets ``b_m``. Otherwise ``lo, hi = b_j, b_{j+1}`` and every unit gets one of
   the two (a non-adjacent width is never used).
3. The number of ``hi`` units is the largest ``k`` in ``0..n`` with
   ``((n - k) c_lo + k c_hi) / n <= B``, i.e. ``k = floor(n (B - c_lo) / (c_hi - c_lo))``: the
   largest achievable average not exceeding the budget, at most one unit's step
   ``(c_hi - c_lo) / n`` below it. Without overhead this is the papers' "top fraction
   ``f = (B - b_lo) / (b_hi - b_lo)`` gets ``b_hi``", rounded down to whole units.
4. The ``k`` units with the highest scores get ``hi``: a stable sort by descending score, ties to
   the lower index. So a higher score never gets a lower width, and the result is deterministic.

Pair versus water-filling with ``m > 2`` widths: the pair rule leaves every unit within one step
of the budget's width, which is what CLAQ and CMPQ describe ("the top fraction gets the higher
width"), and with consecutive integer widths and no overhead every multiple of ``1/n`` is reached,
so the result is the best achievable average overall. With gaps between widths or
width-dependent overhead, mixing non-adjacent widths could land closer to ``B`` (a knapsack
problem); the pair rule does not try, and guarantees ``0 <= B - A(w) < (c_hi - c_lo) / n``
(``= 0`` when ``B`` is a width's cost).

Compared with the CLAQ reference, which gives ``round(n f)`` columns the high width (Python's
``round``, half to even, so it may overshoot ``B`` by up to half a unit), this rounds down.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

#: Absolute tolerance (bits per weight) on budgets: an average within ``BUDGET_TOL`` above the
#: budget counts as meeting it, so that float round-off in ``B`` (e.g. 2.1) does not cost a unit.
BUDGET_TOL = 1e-9

Overhead = Callable[[int], float] | Mapping[int, float] | None


def table_overhead(d_out: int, entry_bits: int = 16) -> Callable[[int], float]:
    """Per-weight overhead of one lookup table of ``2^b`` entries per unit of ``d_out`` weights.

    ``o(b) = 2^b * entry_bits / d_out`` (CLAQ and CMPQ per-column tables, fp16 entries); this
    matches the ``tables`` part of :func:`lowbit.core.bits.bit_report` for a table-format layer.
    """
    if d_out < 1:
        raise ValueError(f"d_out must be positive, got {d_out}")

    def overhead(b: int) -> float:
        return (2**b) * entry_bits / d_out

    return overhead


def _overhead_fn(overhead: Overhead) -> Callable[[int], float]:
    if overhead is None:
        return lambda b: 0.0
    if isinstance(overhead, Mapping):
        table = dict(overhead)

        def lookup(b: int) -> float:
            try:
                return float(table[b])
            except KeyError:
                raise ValueError(f"overhead mapping has no entry for width {b}") from None

        return lookup
    if callable(overhead):
        return lambda b: float(overhead(b))
    raise TypeError(f"overhead must be None, a mapping width -> bits or a callable, got {type(overhead)}")


def width_costs(widths: Sequence[int], overhead: Overhead = None) -> tuple[list[int], list[float]]:
    """Sorted distinct widths and their per-weight costs ``c(b) = b + o(b)``.

    Raises ``ValueError`` for an empty set, a width that is not a positive integer, a cost that is
    not finite, or costs that do not increase strictly with the width.
    """
    ws = list(widths)
    if not ws:
        raise ValueError("widths is empty")
    for b in ws:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"widths must be positive integers, got {widths!r}")
    ws = sorted(set(ws))
    fn = _overhead_fn(overhead)
    costs = [b + fn(b) for b in ws]
    if not all(math.isfinite(c) for c in costs):
        raise ValueError(f"costs of widths {ws} are not finite: {costs}")
    if any(c1 >= c2 for c1, c2 in itertools.pairwise(costs)):
        raise ValueError(f"costs (width + overhead) must increase with the width; widths {ws} cost {costs}")
    return ws, costs


def feasible_range(widths: Sequence[int], overhead: Overhead = None) -> tuple[float, float]:
    """``(c_min, c_max)``: the budgets (bits per weight) that :func:`allocate_bits` accepts."""
    _, costs = width_costs(widths, overhead)
    return costs[0], costs[-1]


def average_bits(widths: Tensor, overhead: Overhead = None) -> float:
    """Average cost ``(1/n) sum_i (w_i + o(w_i))`` of an allocation, in bits per weight."""
    w = widths.reshape(-1).tolist()
    if not w:
        raise ValueError("widths is empty")
    fn = _overhead_fn(overhead)
    per_width = {b: b + fn(b) for b in set(w)}
    return math.fsum(per_width[b] for b in w) / len(w)


def _max_high_count(n: int, c_lo: float, c_hi: float, budget: float) -> int:
    """Largest ``k`` in ``0..n`` with ``((n - k) c_lo + k c_hi) / n <= budget + BUDGET_TOL``."""
    limit = budget + BUDGET_TOL

    def avg(k: int) -> float:
        return ((n - k) * c_lo + k * c_hi) / n

    k = min(max(math.floor((limit - c_lo) * n / (c_hi - c_lo)), 0), n)
    while k > 0 and avg(k) > limit:
        k -= 1
    while k < n and avg(k + 1) <= limit:
        k += 1
    return k


def rank_descending(scores: Tensor) -> Tensor:
    """Indices of ``scores`` (1-D) from highest to lowest; equal scores keep index order."""
    return torch.sort(scores, descending=True, stable=True).indices


def allocate_bits(scores: Tensor, widths: Sequence[int], budget: float, *,
                  overhead: Overhead = None) -> Tensor:
    """Per-unit widths from scores under an exact average budget (rule in the module docstring).

    CLAQ: ``allocate_bits(outlier_counts(W), claq_widths(B), B)``; CMPQ: activation norms per
    input channel as ``scores``, ``widths=(2, 3, 4)`` and ``overhead=table_overhead(d_out)`` to
    put the tables inside the budget.

    Args:
        scores: ``(n,)`` real scores, higher gets wider; must be finite.
        widths: candidate integer widths (any order, duplicates ignored).
        budget: target average cost ``B`` in bits per weight, including ``overhead``.
        overhead: per-weight overhead of a unit of width ``b``: a callable ``b -> bits``, a mapping
            ``{b: bits}``, or ``None`` (no overhead), e.g. :func:`table_overhead`.
    Returns:
        ``(n,)`` int64 widths on ``scores.device``, with ``0 <= B - A(w) < (c_hi - c_lo) / n``
        (up to :data:`BUDGET_TOL` above ``B``).
    Raises:
        ValueError: bad scores or widths, or ``B`` outside ``[c_min, c_max]``.
    """
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor, got shape {tuple(scores.shape)}")
    if scores.is_floating_point() and not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (found NaN or inf)")
    ws, costs = width_costs(widths, overhead)
    budget = float(budget)
    lo_cost, hi_cost = costs[0], costs[-1]
    if not (lo_cost - BUDGET_TOL <= budget <= hi_cost + BUDGET_TOL):
        raise ValueError(
            f"budget {budget} bits per weight is infeasible for widths {ws} (cost with overhead "
            f"{[round(c, 6) for c in costs]}): the feasible range is [{lo_cost}, {hi_cost}]")
    n = scores.numel()
    j = max(i for i, c in enumerate(costs) if c <= budget + BUDGET_TOL)
    out = torch.full((n,), ws[j], dtype=torch.int64, device=scores.device)
    if j == len(ws) - 1:
        return out
    k = _max_high_count(n, costs[j], costs[j + 1], budget)
    if k:
        out[rank_descending(scores)[:k]] = ws[j + 1]
    return out

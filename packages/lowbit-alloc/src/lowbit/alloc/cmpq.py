"""CMPQ's activation-based channel precision (arXiv 2410.13056), under a total bit budget.

CMPQ (channel-wise mixed-precision quantization) gives each *input channel* ``j`` of a linear layer
(``W`` is ``(d_out, d_in)``, ``y = x W^T``; the channel is the column ``W[:, j]``) its own bit width,
ranked by the activation statistics of that channel over the calibration tokens, so that any
fractional average between 2 and 4 bits is met at channel granularity.

Confirmed from the paper (abstract, v3/v4): precision is allocated channel-wise from the
*activation distribution*, any bit-width constraint between 2 and 4 bits is supported, quantization
is non-uniform, and two outlier extractions are added; it needs no gradients (unlike SqueezeLLM).
Not confirmed (the body of the paper could not be read from here), so chosen and documented:

- **Score** (:func:`channel_scores`): the L2 norm of the channel over calibration tokens,
  ``s_j = ||X_{:, j}||_2 = sqrt(sum_t x_tj^2)`` (``ActStats.norm``). Its square is the diagonal of the
  layer Hessian ``X^T X``, i.e. the factor by which a unit error in column ``j`` grows the output
  error ``||(W - W_hat) X^T||^2``. ``"mean_abs"`` (AWQ's statistic) and ``"absmax"`` are offered too.
- **Widths**: the allocator's pair rule (:func:`lowbit.alloc.allocate_bits`): the top
  ``f = (B' - c_lo) / (c_hi - c_lo)`` of channels by score get the higher of the two adjacent widths
  that bracket the budget, the rest the lower. Default widths ``1..4``: with fp16 tables and fp16
  outliers inside the budget, a *total* of 2.0 bits per weight is only reachable by giving some
  low-activation channels 1 bit (``c(2) > 2``); from about 2.3 bits up only widths 2..4 are mixed.

The budget ``B`` is the **total** bits per weight of :func:`lowbit.core.bits.bit_report`: codes,
per-channel lookup tables (``2^b`` fp16 entries per channel, ``o(b) = 2^b * 16 / d_out`` per weight:
:func:`lowbit.alloc.table_overhead`) and sparse outliers (values and indices). Outliers cost the
same whatever the widths, so :func:`cmpq_allocate` takes their cost ``r`` (bits per weight, e.g.
from ``lowbit.sparse.cmpq_outlier_bits``) and allocates codes plus tables to ``B' = B - r``.
Channels whose weights are all kept in full precision anyway (CMPQ's activation-based outliers)
are pinned to the lowest width (their codes are overwritten, so they should cost as little as
possible) and the others share what is left:

    B'' = (d_in B' - n_fixed c(b_min)) / (d_in - n_fixed),

so the layer's total lands in ``(B - (c_hi - c_lo) / d_in, B]``: below the budget by less than one
channel's step (0.0035 bits for a 576-channel layer between 2 and 4 bits).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lowbit.core.calib import ActStats

from .allocate import BUDGET_TOL, allocate_bits, table_overhead, width_costs

#: CMPQ's candidate widths here (module docstring): 1 only where a total near 2 bits needs it.
CMPQ_WIDTHS = (1, 2, 3, 4)
CHANNEL_STATISTICS = ("l2", "mean_abs", "absmax")


def channel_scores(act: ActStats, statistic: str = "l2") -> Tensor:
    """Per-input-channel activation score ``(d_in,)`` (float32) from calibration statistics.

    ``"l2"``: ``||X_{:, j}||_2`` (CMPQ's allocation statistic here); ``"mean_abs"``:
    ``mean_t |x_tj|``; ``"absmax"``: ``max_t |x_tj|``. Larger means more important.
    """
    if statistic == "l2":
        return act.norm
    if statistic == "mean_abs":
        return act.mean_abs
    if statistic == "absmax":
        return act.absmax.float()
    raise ValueError(f"unknown statistic {statistic!r}; known: {CHANNEL_STATISTICS}")


def cmpq_feasible_range(d_out: int, widths: Sequence[int] = CMPQ_WIDTHS, *, reserved_bits: float = 0.0,
                        entry_bits: int = 16) -> tuple[float, float]:
    """Total budgets ``[c(b_min) + r, c(b_max) + r]`` (bits per weight) a layer of ``d_out`` rows
    can meet with per-channel tables and ``reserved_bits = r`` of outliers (no pinned channels)."""
    _, costs = width_costs(widths, table_overhead(d_out, entry_bits))
    return costs[0] + reserved_bits, costs[-1] + reserved_bits


def cmpq_allocate(scores: Tensor, budget: float, d_out: int, *, widths: Sequence[int] = CMPQ_WIDTHS,
                  reserved_bits: float = 0.0, fixed_low: Tensor | None = None,
                  entry_bits: int = 16) -> Tensor:
    """Per-channel widths ``(d_in,)`` meeting a total budget (module docstring for the rule).

    Args:
        scores: ``(d_in,)`` activation scores (:func:`channel_scores`), higher gets wider.
        budget: total bits per weight ``B`` (codes + tables + ``reserved_bits``).
        d_out: rows of the layer (the weights sharing one channel's table).
        widths: candidate widths; the two adjacent ones bracketing the budget are mixed.
        reserved_bits: bits per weight already spent on parts that do not depend on the widths
            (CMPQ: both outlier sets, values and indices).
        fixed_low: optional ``(d_in,)`` bool mask of channels pinned to the lowest width.
        entry_bits: bits per table entry (16: fp16 tables).
    Returns:
        ``(d_in,)`` int64 widths on ``scores.device``; codes plus tables average at most
        ``B - reserved_bits`` and less than one channel's step below it.
    Raises:
        ValueError: the budget cannot be met: it is below the cost of every channel at the lowest
            width plus the reserved bits, or above every channel at the highest width.
    """
    if scores.dim() != 1 or scores.numel() == 0:
        raise ValueError(f"scores must be a non-empty 1-D tensor, got shape {tuple(scores.shape)}")
    d_in = scores.numel()
    overhead = table_overhead(d_out, entry_bits)
    ws, costs = width_costs(widths, overhead)
    fixed = torch.zeros(d_in, dtype=torch.bool, device=scores.device) if fixed_low is None \
        else fixed_low.to(device=scores.device, dtype=torch.bool)
    if fixed.shape != (d_in,):
        raise ValueError(f"fixed_low must have shape ({d_in},), got {tuple(fixed.shape)}")
    n_fixed = int(fixed.sum())
    code_budget = float(budget) - float(reserved_bits)
    lo, hi = costs[0], costs[-1]
    if n_fixed < d_in:
        free_budget = (d_in * code_budget - n_fixed * lo) / (d_in - n_fixed)
        feasible = lo - BUDGET_TOL <= free_budget <= hi + BUDGET_TOL
    else:
        feasible = code_budget >= lo - BUDGET_TOL
    if not feasible:
        top = (n_fixed * lo + (d_in - n_fixed) * hi) / d_in + reserved_bits
        raise ValueError(
            f"total budget {budget} bits per weight is infeasible for a ({d_out}, {d_in}) layer: with widths "
            f"{ws}, fp{entry_bits} tables and {reserved_bits:.4f} bits per weight of outliers it must lie in "
            f"[{lo + reserved_bits:.4f}, {top:.4f}]")
    out = torch.full((d_in,), ws[0], dtype=torch.int64, device=scores.device)
    if n_fixed < d_in:
        free = (~fixed).nonzero(as_tuple=True)[0]
        out[free] = allocate_bits(scores[free], ws, min(max(free_budget, lo), hi), overhead=overhead)
    return out

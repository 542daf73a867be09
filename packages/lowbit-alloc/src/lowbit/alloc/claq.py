"""CLAQ's outlier-guided adaptive precision (arXiv 2405.17233), composed from the primitives.

For a target ``2 <= B < 3`` the top ``(B - 2) / 2`` of input columns by outlier count get 4 bits and
the rest 2 bits (``B = 2.1``: top 5% at 4 bits); for ``3 <= B <= 4`` the top ``B - 3`` get 4 bits
and the rest 3. The paper's budget labels count codes only (the per-column tables, ``2^b * 16 /
d_out`` bits per weight, are left out); pass ``overhead=table_overhead(d_out)`` to put them inside
the budget instead, and report the real cost with :func:`lowbit.core.bits.bit_report` either way.
"""

from __future__ import annotations

from torch import Tensor

from .allocate import Overhead, allocate_bits
from .scores import outlier_counts


def claq_widths(budget: float) -> tuple[int, int]:
    """The width pair CLAQ mixes for an average budget: ``(2, 4)`` for ``2 <= B < 3`` (``B = 2`` is
    all 2-bit), ``(3, 4)`` for ``3 <= B <= 4``; ``ValueError`` outside ``[2, 4]``."""
    b = float(budget)
    if 2.0 <= b < 3.0:
        return (2, 4)
    if 3.0 <= b <= 4.0:
        return (3, 4)
    raise ValueError(f"CLAQ mixes 2/3/4-bit columns: budget must lie in [2, 4] bits, got {budget}")


def claq_allocate(W: Tensor, budget: float, t: float = 13.0, *, overhead: Overhead = None) -> Tensor:
    """Per-column widths ``(d_in,)`` for ``W`` (``(d_out, d_in)``) by CLAQ's outlier-guided rule:
    ``allocate_bits(outlier_counts(W, t), claq_widths(budget), budget, overhead=overhead)``.

    With ``overhead`` the pair is still chosen from the code budget ``B`` (the paper's label);
    the overhead then only changes how many columns can afford 4 bits.
    """
    return allocate_bits(outlier_counts(W, t), claq_widths(budget), budget, overhead=overhead)

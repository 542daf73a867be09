"""lowbit.alloc: bit-width allocation under exact fractional budgets.

Scores say which units (input columns) matter; :func:`allocate_bits` turns any score into integer
widths whose average cost meets a fractional budget exactly at unit granularity. CLAQ
(arXiv 2405.17233) scores columns by outlier counts; CMPQ (arXiv 2410.13056) by activation norms.
"""

from .allocate import (
    BUDGET_TOL,
    Overhead,
    allocate_bits,
    average_bits,
    feasible_range,
    rank_descending,
    table_overhead,
    width_costs,
)
from .claq import claq_allocate, claq_widths
from .cmpq import CHANNEL_STATISTICS, CMPQ_WIDTHS, channel_scores, cmpq_allocate, cmpq_feasible_range
from .scores import hessian_weighted_scores, outlier_counts, outlier_threshold

__version__ = "0.1.0"

__all__ = [
    "BUDGET_TOL",
    "CMPQ_WIDTHS",
    "Overhead",
    "CHANNEL_STATISTICS",
    "__version__",
    "allocate_bits",
    "average_bits",
    "channel_scores",
    "claq_allocate",
    "claq_widths",
    "cmpq_allocate",
    "cmpq_feasible_range",
    "feasible_range",
    "hessian_weighted_scores",
    "outlier_counts",
    "outlier_threshold",
    "rank_descending",
    "table_overhead",
    "width_costs",
]

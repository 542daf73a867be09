"""lowbit.sparse: dense-and-sparse outlier selection and storage.

Selection rules return boolean masks (:mod:`lowbit.sparse.select`); :func:`outliers_from_mask`
stores the chosen entries as :class:`lowbit.core.formats.SparseOutliers`; :func:`outlier_bits`
prices them with :func:`lowbit.core.bits.bit_report`. CLAQ's dynamic reservation
(arXiv 2405.17233) lives in :mod:`lowbit.sparse.reserve`.
"""

from .cmpq import (
    activation_outlier_mask,
    cmpq_outlier_bits,
    cmpq_outlier_counts,
    quantization_outlier_mask,
)
from .reserve import RULES, reservation_fractions, reserve_column_outliers, reserved_counts
from .select import (
    column_extremes_mask,
    count_from_fraction,
    relative_threshold_mask,
    topk_magnitude,
    topk_mask,
)
from .storage import outlier_bits, outliers_from_mask, outliers_mask

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "__version__",
    "activation_outlier_mask",
    "cmpq_outlier_bits",
    "cmpq_outlier_counts",
    "column_extremes_mask",
    "count_from_fraction",
    "outlier_bits",
    "outliers_from_mask",
    "outliers_mask",
    "quantization_outlier_mask",
    "relative_threshold_mask",
    "reservation_fractions",
    "reserve_column_outliers",
    "reserved_counts",
    "topk_magnitude",
    "topk_mask",
]

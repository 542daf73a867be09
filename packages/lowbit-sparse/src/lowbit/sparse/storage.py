"""Sparse storage: from a mask and the dense weight to :class:`lowbit.core.formats.SparseOutliers`,
and its cost by the one accounting of :mod:`lowbit.core.bits`."""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.bits import bit_report
from lowbit.core.formats import QuantizedWeight, SparseOutliers


def outliers_from_mask(W: Tensor, mask: Tensor, value_dtype: torch.dtype | None = torch.float16
                       ) -> SparseOutliers:
    """The entries of ``W`` where ``mask`` is true, as ``SparseOutliers`` (row-major order).

    Args:
        W: ``(d_out, d_in)`` dense weight.
        mask: bool ``(d_out, d_in)``.
        value_dtype: storage dtype of the values, fp16 by default (the papers' convention, exact
            for fp16 checkpoints); ``None`` keeps ``W.dtype``. ``value_bits`` is that dtype's width,
            so the accounting matches what is stored.
    Returns:
        ``SparseOutliers`` with int64 ``rows``/``cols`` and ``values`` in ``value_dtype``.
    """
    if mask.shape != W.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool of shape {tuple(W.shape)}, got {mask.dtype} {tuple(mask.shape)}")
    rows, cols = mask.nonzero(as_tuple=True)
    dtype = W.dtype if value_dtype is None else value_dtype
    values = W.detach()[rows, cols].to(dtype)
    return SparseOutliers(rows=rows, cols=cols, values=values, value_bits=torch.finfo(dtype).bits)


def outliers_mask(outliers: SparseOutliers, shape: tuple[int, int]) -> Tensor:
    """Bool ``shape`` mask of the outlier positions (on the device of ``outliers.rows``)."""
    mask = torch.zeros(shape, dtype=torch.bool, device=outliers.rows.device)
    mask[outliers.rows, outliers.cols] = True
    return mask


def outlier_bits(outliers: SparseOutliers, shape: tuple[int, int]) -> dict[str, float]:
    """Bits of ``outliers`` in a ``shape`` layer, from :func:`lowbit.core.bits.bit_report` (values at
    ``value_bits`` each, indices in the cheaper of CSR and CSC).

    Returns ``{"outlier_values", "outlier_indices", "total", "bits_per_weight"}``, the last over all
    ``d_out * d_in`` weights of the layer.
    """
    shell = QuantizedWeight("uniform", tuple(shape), codes=torch.empty(0), bits=0, outliers=outliers)
    parts = bit_report(shell).parts
    values, indices = parts["outlier_values"], parts["outlier_indices"]
    n = shape[0] * shape[1]
    return {"outlier_values": values, "outlier_indices": indices, "total": values + indices,
            "bits_per_weight": (values + indices) / n if n else 0.0}

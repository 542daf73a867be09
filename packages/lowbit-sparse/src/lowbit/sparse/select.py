"""Selection rules: which entries of a weight (or of a score over its entries) to keep sparse.

Every rule returns a boolean mask of the score's shape; :func:`lowbit.sparse.outliers_from_mask`
turns a mask and the dense weight into :class:`lowbit.core.formats.SparseOutliers`. The rules are
shared by the methods: the largest magnitudes or residuals (CMPQ's quantization-based outliers,
arXiv 2410.13056), scores above a multiple of their mean (SpQR's relative threshold,
arXiv 2306.03078), and the per-column extremes that CLAQ reserves (arXiv 2405.17233).

Counts from fractions use ``round(frac * n)`` with ties to even (Python's ``round``, as the CLAQ
reference does). Ties between equal scores go to the lower index (stable sorts), so every rule is
deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor


def count_from_fraction(frac: float, n: int) -> int:
    """``round(frac * n)`` (ties to even) for ``0 <= frac <= 1``."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {frac}")
    return min(round(frac * n), n)


def topk_mask(scores: Tensor, frac: float | None = None, *, k: int | None = None,
              dim: int | None = None) -> Tensor:
    """Mask of the ``k`` largest ``scores`` (``k = round(frac * n)`` when ``frac`` is given).

    Args:
        scores: any shape; larger is selected first, equal scores go to the lower index.
        frac / k: exactly one: the fraction of entries, or their number.
        dim: ``None`` selects over all entries; an int selects ``k`` per slice along ``dim``
            (``dim=0``: per input column of a ``(d_out, d_in)`` weight; ``n`` is then that
            dimension's length).
    Returns:
        bool mask, ``scores.shape``.
    """
    if (frac is None) == (k is None):
        raise ValueError("give exactly one of frac and k")
    if dim is None:
        flat = scores.reshape(-1)
        n = flat.numel()
        kk = count_from_fraction(frac, n) if frac is not None else int(k or 0)
        if not 0 <= kk <= n:
            raise ValueError(f"k must lie in [0, {n}], got {kk}")
        mask = torch.zeros(n, dtype=torch.bool, device=scores.device)
        mask[torch.sort(flat, descending=True, stable=True).indices[:kk]] = True
        return mask.reshape(scores.shape)
    n = scores.shape[dim]
    kk = count_from_fraction(frac, n) if frac is not None else int(k or 0)
    if not 0 <= kk <= n:
        raise ValueError(f"k must lie in [0, {n}], got {kk}")
    order = torch.sort(scores, dim=dim, descending=True, stable=True).indices
    shape = [1] * scores.dim()
    shape[dim] = n
    chosen = (torch.arange(n, device=scores.device) < kk).reshape(shape).expand_as(scores)
    return torch.zeros_like(scores, dtype=torch.bool).scatter(dim, order, chosen)


def topk_magnitude(x: Tensor, frac: float | None = None, *, k: int | None = None,
                   dim: int | None = None) -> Tensor:
    """Mask of the largest ``|x|`` (e.g. the largest quantization residuals ``W - Q(W)``, CMPQ's
    quantization-based outliers); :func:`topk_mask` on ``x.abs()``."""
    return topk_mask(x.abs(), frac, k=k, dim=dim)


def relative_threshold_mask(scores: Tensor, tau: float, dim: int | None = None) -> Tensor:
    """Mask of ``scores > tau * mean(scores)`` (the mean over all entries, or per slice along
    ``dim``); SpQR's relative outlier threshold on per-weight errors (``tau = 0.2`` there)."""
    mean = scores.mean() if dim is None else scores.mean(dim=dim, keepdim=True)
    return scores > tau * mean


def column_extremes_mask(W: Tensor, n_high: Tensor | int, n_low: Tensor | int) -> Tensor:
    """Per input column ``i`` of ``W`` (``(d_out, d_in)``), mark the ``n_high[i]`` largest and the
    ``n_low[i]`` smallest entries by signed value.

    One stable ascending sort per column: sorted positions ``p < n_low[i]`` and
    ``p >= d_out - n_high[i]`` are marked, so the two sides never overlap (``n_high + n_low`` is
    clipped to ``d_out``); among equal values the low side takes lower rows, the high side higher.

    Returns:
        bool mask ``(d_out, d_in)`` with exactly ``min(n_high[i] + n_low[i], d_out)`` entries per
        column.
    """
    if W.dim() != 2:
        raise ValueError(f"W must be (d_out, d_in), got shape {tuple(W.shape)}")
    d_out, d_in = W.shape
    hi = torch.as_tensor(n_high, device=W.device).to(torch.int64).expand(d_in)
    lo = torch.as_tensor(n_low, device=W.device).to(torch.int64).expand(d_in)
    if bool((hi < 0).any()) or bool((lo < 0).any()):
        raise ValueError("counts must be non-negative")
    hi = hi.clamp(max=d_out)
    lo = torch.minimum(lo, d_out - hi)
    order = torch.sort(W, dim=0, stable=True).indices
    p = torch.arange(d_out, device=W.device)[:, None]
    chosen = (p < lo[None, :]) | (p >= d_out - hi[None, :])
    return torch.zeros_like(W, dtype=torch.bool).scatter(0, order, chosen)

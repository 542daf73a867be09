"""CLAQ's dynamic outlier reservation (arXiv 2405.17233).

Columns are scored (e.g. by :func:`lowbit.alloc.outlier_counts`, passed in as a plain tensor);
the top ``top_frac = 10%`` keep a fraction ``rho_hi = 0.014`` of their entries in full precision,
the others ``rho_lo = 0.004`` (:func:`reservation_fractions`). In each column the reserved entries
are its extremes, the largest and the smallest values (:func:`reserve_column_outliers`); the
k-means fit of the column then excludes them (the returned mask) and the stored weight puts them
back exactly (``QuantizedWeight.outliers``).

Two counting rules, per column of ``n = d_out`` entries with fraction ``rho``:

- ``"split"`` (default, the card's reading: ``rho`` is the fraction reserved): ``k = round(rho n)``
  entries, ``ceil(k/2)`` largest and ``floor(k/2)`` smallest.
- ``"claq_reference"`` (what the CLAQ reference code does): on the column sorted in descending
  order ``s``, it keeps ``x >= s[round(n rho)]`` and ``x <= s[round(n (1 - rho))]``, i.e.
  ``round(n rho) + 1`` largest and ``n - round(n (1 - rho))`` smallest: about ``rho`` at *each*
  end, ``2 rho`` in all. Here ties at the two thresholds are broken by row index so the counts are
  exact, where the reference keeps every tied entry; ``rho = 0`` reserves nothing.

``round`` is half to even, as Python's in the reference. The reference fits the column's
centroids on all its values (reserved ones included) before swapping the reserved values back;
the mask lets a recipe do either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.formats import SparseOutliers

from .select import column_extremes_mask, topk_mask
from .storage import outliers_from_mask

RULES = ("split", "claq_reference")


def reservation_fractions(scores: Tensor, top_frac: float = 0.10, rho_hi: float = 0.014,
                          rho_lo: float = 0.004) -> Tensor:
    """Per-column reservation fraction: ``rho_hi`` for the top ``round(top_frac * d_in)`` columns
    by score (ties to the lower index), ``rho_lo`` for the rest.

    Args:
        scores: ``(d_in,)`` column scores, higher reserves more (CLAQ: outlier counts).
    Returns:
        ``(d_in,)`` float64 fractions on ``scores.device``.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (d_in,), got shape {tuple(scores.shape)}")
    for name, r in (("rho_hi", rho_hi), ("rho_lo", rho_lo)):
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {r}")
    top = topk_mask(scores, top_frac)
    hi = torch.tensor(rho_hi, dtype=torch.float64, device=scores.device)
    lo = torch.tensor(rho_lo, dtype=torch.float64, device=scores.device)
    return torch.where(top, hi, lo)


def reserved_counts(rho: Tensor | float, d_out: int, rule: str = "split") -> tuple[Tensor, Tensor]:
    """``(n_high, n_low)`` int64 per column: how many largest and smallest entries ``rule`` keeps
    for fractions ``rho`` in columns of ``d_out`` entries (module docstring)."""
    r = torch.as_tensor(rho, dtype=torch.float64)
    if bool(((r < 0) | (r > 1) | r.isnan()).any()):
        raise ValueError("rho must lie in [0, 1]")
    if rule == "split":
        k = torch.round(r * d_out).to(torch.int64)
        return (k + 1) // 2, k // 2
    if rule == "claq_reference":
        hi = (torch.round(r * d_out).to(torch.int64) + 1).clamp(max=d_out)
        lo = d_out - torch.round((1 - r) * d_out).to(torch.int64)
        lo = torch.minimum(lo, d_out - hi)
        zero = r == 0
        return torch.where(zero, 0, hi), torch.where(zero, 0, lo)
    raise ValueError(f"unknown rule {rule!r}; known: {RULES}")


def reserve_column_outliers(W: Tensor, rho: Tensor | float, *, rule: str = "split",
                            value_dtype: torch.dtype | None = torch.float16
                            ) -> tuple[Tensor, SparseOutliers]:
    """Reserve each input column's extreme entries in full precision (CLAQ).

    Args:
        W: ``(d_out, d_in)`` weight (after error feedback, when used inside the GPTQ loop).
        rho: ``(d_in,)`` fractions (e.g. :func:`reservation_fractions`) or one float for all.
        rule: ``"split"`` or ``"claq_reference"`` (module docstring).
        value_dtype: storage dtype of the reserved values (fp16 default; ``None`` keeps ``W``'s).
    Returns:
        ``mask`` bool ``(d_out, d_in)``, true at reserved entries (exclude them from the fit), and
        the reserved entries as ``SparseOutliers`` (row-major), to attach to the
        ``QuantizedWeight`` so that ``dequantize()`` reproduces them.
    """
    if W.dim() != 2:
        raise ValueError(f"W must be (d_out, d_in), got shape {tuple(W.shape)}")
    d_out, d_in = W.shape
    r = torch.as_tensor(rho, dtype=torch.float64)
    if r.dim() == 0:
        r = r.expand(d_in)
    if r.shape != (d_in,):
        raise ValueError(f"rho must be a float or have shape ({d_in},), got {tuple(r.shape)}")
    n_high, n_low = reserved_counts(r.cpu(), d_out, rule)
    mask = column_extremes_mask(W, n_high.to(W.device), n_low.to(W.device))
    return mask, outliers_from_mask(W, mask, value_dtype)

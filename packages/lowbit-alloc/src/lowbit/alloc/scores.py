"""Per-column scores that decide which input columns get more bits.

A linear layer's weight ``W`` is ``(d_out, d_in)`` with ``y = x W^T``; a *column* is the input
column ``W[:, i]`` (length ``d_out``), the unit CLAQ (arXiv 2405.17233) and CMPQ (arXiv 2410.13056)
give one bit width and one lookup table. Every score here is a ``(d_in,)`` tensor where larger
means "more important"; :func:`lowbit.alloc.allocate_bits` turns any such score into widths.
CMPQ's activation statistics (e.g. the norm of each input channel over calibration tokens) are
already such a score and need no helper.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_matrix(W: Tensor) -> None:
    if W.dim() != 2:
        raise ValueError(f"W must be a (d_out, d_in) matrix, got shape {tuple(W.shape)}")
    if W.numel() == 0:
        raise ValueError("W is empty")


def _abs_upcast(W: Tensor) -> Tensor:
    """``|W|`` in at least float32 (fp16/bf16/int are upcast; float64 stays float64)."""
    a = W.detach().abs()
    return a.to(torch.promote_types(a.dtype, torch.float32))


def outlier_threshold(W: Tensor, t: float = 13.0) -> Tensor:
    """CLAQ's layer-wide outlier threshold ``t * mean |W|`` (0-dim tensor, float32 or float64).

    The mean is taken over all ``d_out * d_in`` entries of the layer, in float32 (float64 when
    ``W`` is float64), as in the CLAQ reference (which upcasts ``W`` to float first).
    """
    _check_matrix(W)
    if not t > 0:
        raise ValueError(f"t must be positive, got {t}")
    return t * _abs_upcast(W).mean()


def outlier_counts(W: Tensor, t: float = 13.0) -> Tensor:
    """CLAQ's outlier-guided column score (arXiv 2405.17233, "outlier order").

    ``count_i = #{ j : |W_ji| >= t * mean|W| }``, the mean over the whole layer; an entry exactly
    at the threshold counts (the reference keeps entries outside the open interval
    ``(-t * mean, t * mean)``). The comparison is made in float32 (float64 for float64 ``W``).

    Args:
        W: ``(d_out, d_in)`` weight, any floating dtype and device.
        t: threshold multiple of the mean magnitude; the paper uses 13.
    Returns:
        ``(d_in,)`` int64 counts on ``W.device``.
    """
    thr = outlier_threshold(W, t)
    return (_abs_upcast(W) >= thr).sum(dim=0)


def hessian_weighted_scores(W: Tensor, hinv_chol_diag: Tensor) -> Tensor:
    """CLAQ's Hessian-weighted alternative column score (the reference's ``inputhes``).

    ``s_i = mean_j W_ji^2 / U_ii^2`` where ``U`` is the upper Cholesky factor of ``H^{-1}``
    (GPTQ's ``Hinv``, ``H = 2 X^T X / N``), i.e. the OBS-style saliency ``w^2 / [H^{-1}]_ii``
    with GPTQ's sequential diagonal. Columns with a larger expected loss increase score higher.

    Args:
        W: ``(d_out, d_in)`` weight (in the same column order as ``U``).
        hinv_chol_diag: ``(d_in,)`` diagonal of ``U``; must be nonzero.
    Returns:
        ``(d_in,)`` float scores (float32, or float64 when either input is float64).
    """
    _check_matrix(W)
    d = hinv_chol_diag.reshape(-1)
    if d.numel() != W.shape[1]:
        raise ValueError(f"hinv_chol_diag has {d.numel()} entries, W has {W.shape[1]} columns")
    dtype = torch.promote_types(torch.promote_types(W.dtype, d.dtype), torch.float32)
    w2 = W.detach().to(dtype).pow(2)
    return (w2 / d.to(device=W.device, dtype=dtype).pow(2)).mean(dim=0)

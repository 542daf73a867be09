"""CMPQ's two outlier extractions (arXiv 2410.13056), kept sparse in fp16 and priced in the budget.

For a linear layer ``W`` (``(d_out, d_in)``, ``y = x W^T``) with per-input-channel activation scores
``s`` (``(d_in,)``, e.g. ``||X_{:, j}||_2`` from ``lowbit.alloc.channel_scores``):

1. **Activation-based** (:func:`activation_outlier_mask`): the ``n_a = round(f_a d_in)`` channels
   with the largest scores keep *all* their ``d_out`` weights in full precision (the channels where
   extreme activations multiply any weight error; AWQ, arXiv 2306.00978, found 1% of such channels
   in fp16 recovers most of the loss). Chosen before quantization.
2. **Quantization-based** (:func:`quantization_outlier_mask`): after quantizing, the
   ``n_q = round(f_q d_out d_in)`` entries with the largest residual ``|W - W_hat|`` among those not
   already kept are kept in full precision.

Both sets go into one :class:`lowbit.core.formats.SparseOutliers` (:func:`outliers_from_mask`, fp16
values), so ``dequantize()`` returns them exactly (as fp16). Disjoint by construction, the union
has exactly ``n_a d_out + n_q`` entries, and because :func:`lowbit.core.bits.bit_report` prices
sparse outliers from their count and the layer shape alone (values, plus the cheaper of CSR and CSC
indices), the cost is known *before* quantizing (:func:`cmpq_outlier_bits`): the recipe subtracts it
from the total budget before allocating widths, and the final report matches it exactly.

Confirmed from the paper (abstract): there are two outlier extractions that "collaboratively
preserve the critical information", one based on activations and one on quantization. Chosen (the
body of the paper could not be read from here; recorded so the ablation can measure them): the
fractions are separate parameters, ``f_a`` a fraction of *channels* (= of weights, whole channels
are kept), ``f_q`` a fraction of the layer's weights; the residual is unweighted ``|W - W_hat|``
(within one input channel every entry meets the same activations, so a per-channel activation
weight would only reorder entries across channels); ties go to the lower index.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.formats import SparseOutliers

from .select import count_from_fraction, topk_mask
from .storage import outlier_bits


def cmpq_outlier_counts(shape: tuple[int, int], act_frac: float, quant_frac: float) -> tuple[int, int]:
    """``(n_channels, n_quant)``: activation-outlier channels ``round(act_frac d_in)`` and
    quantization-outlier entries ``round(quant_frac d_out d_in)``, the latter capped at the entries
    left outside those channels. The union holds ``n_channels d_out + n_quant`` entries."""
    d_out, d_in = shape
    n_channels = count_from_fraction(act_frac, d_in)
    n_quant = min(count_from_fraction(quant_frac, d_out * d_in), d_out * (d_in - n_channels))
    return n_channels, n_quant


def cmpq_outlier_bits(shape: tuple[int, int], nnz: int, value_bits: int = 16) -> float:
    """Bits per weight of ``nnz`` sparse outliers in a ``shape`` layer, by
    :func:`lowbit.core.bits.bit_report` (which depends on the count and the shape only)."""
    if nnz < 0:
        raise ValueError(f"nnz must be non-negative, got {nnz}")
    idx = torch.zeros(nnz, dtype=torch.int64)
    shell = SparseOutliers(idx, idx, torch.zeros(nnz), value_bits)
    return outlier_bits(shell, shape)["bits_per_weight"]


def activation_outlier_mask(scores: Tensor, d_out: int, frac: float | None = None, *,
                            k: int | None = None) -> Tensor:
    """CMPQ's activation-based outliers: every weight of the ``k`` (or ``round(frac d_in)``)
    input channels with the largest activation ``scores``.

    Args:
        scores: ``(d_in,)`` per-channel activation scores (ties to the lower index).
        d_out: rows of the layer.
    Returns:
        bool ``(d_out, d_in)``, whole columns true.
    """
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (d_in,), got shape {tuple(scores.shape)}")
    cols = topk_mask(scores, frac, k=k)
    return cols[None, :].expand(d_out, -1).clone()


def quantization_outlier_mask(W: Tensor, W_hat: Tensor, frac: float | None = None, *, k: int | None = None,
                              exclude: Tensor | None = None) -> Tensor:
    """CMPQ's quantization-based outliers: the ``k`` (or ``round(frac d_out d_in)``, capped at the
    entries not excluded) entries with the largest residual ``|W - W_hat|``, outside ``exclude``.

    Args:
        W: ``(d_out, d_in)`` weight; ``W_hat``: its quantized reconstruction, same shape.
        exclude: optional bool ``(d_out, d_in)`` mask of entries already kept (never chosen).
    Returns:
        bool ``(d_out, d_in)`` with exactly that many entries, disjoint from ``exclude``.
    """
    if W.shape != W_hat.shape or W.dim() != 2:
        raise ValueError(f"W and W_hat must be (d_out, d_in) of one shape, got {tuple(W.shape)}, "
                         f"{tuple(W_hat.shape)}")
    n = W.numel()
    if (frac is None) == (k is None):
        raise ValueError("give exactly one of frac and k")
    kk = count_from_fraction(frac, n) if frac is not None else int(k or 0)
    if kk < 0:
        raise ValueError(f"k must be non-negative, got {kk}")
    kk = min(kk, n)
    resid = (W.detach().float() - W_hat.detach().float()).abs()
    if exclude is not None:
        if exclude.shape != W.shape:
            raise ValueError(f"exclude must have shape {tuple(W.shape)}, got {tuple(exclude.shape)}")
        kk = min(kk, n - int(exclude.sum()))
        resid = resid.masked_fill(exclude.to(resid.device), -1.0)  # below every residual
    return topk_mask(resid, k=kk)

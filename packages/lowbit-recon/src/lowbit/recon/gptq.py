"""GPTQ: error feedback with a pluggable column quantizer (Frantar et al., arXiv 2210.17323).

For a layer ``W`` (d_out x d_in, y = x W^T) and Hessian ``H = 2/N sum x x^T`` (d_in x d_in), GPTQ
quantizes columns in order (optionally act-order: by decreasing diag H) and spreads each column's
error over the columns not yet quantized, using ``U``, the upper Cholesky factor of ``H^-1``:

    q_i = Q(w_i);   e_i = (w_i - q_i) / U_ii;   w_j <- w_j - e_i U_ij   for j > i.

Updates are applied lazily: inside a block of B columns immediately, to later columns once per
block (``W[:, i2:] -= E U[i1:i2, i2:]``). This is the same arithmetic as the plain column loop.

The column quantizer ``Q`` is any object with ``prepare(W, perm)``, ``__call__(W_block, i, j,
U) -> q`` (quantize column ``i`` of the current block, global processing position ``j``,
original column ``perm[j]``; ``U`` the whole factor in processing order, so ``U[j, j]`` is the
column's) and ``result(Q) -> QuantizedWeight``; see :class:`ColumnQuantizer`.

The loop is launch-bound on an accelerator (thousands of small column steps), so each step is
two tensor operations besides the quantizer: ``d_i = w_i - q_i`` (written straight into row i of a
block buffer D) and one rank-1 update with the row ``U[i, i:] / U_ii`` (pre-scaled per block). The
update leaves q_i in column i of the block (to rounding), so Q needs no store either; the block's
errors for the lazy update are ``E = D^T / diag(U1)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight

log = logging.getLogger(__name__)


class ColumnQuantizer(Protocol):
    """What GPTQ and round-to-nearest need from a column quantizer.

    ``block_multiple``: GPTQ's block size is rounded up to a multiple of it, so that a quantizer
    that fits parameters on g consecutive columns sees them all, updated, in one block.
    ``host_loop`` (optional, default False): run each block's column loop on the CPU (the block
    and its ``U`` are copied there and back; the lazy updates stay on ``W``'s device). For
    quantizers whose column step is host work (a k-means fit per column), where an accelerator
    would otherwise synchronise and launch a dozen tiny kernels per column.
    """

    block_multiple: int

    def prepare(self, W: Tensor, perm: Tensor) -> None:
        """Called once, before any update, with ``W`` (d_out x d_in) in processing order."""

    def __call__(self, W: Tensor, i: int, j: int, U: Tensor | None) -> Tensor:
        """Quantized values of column ``i`` of ``W`` (the current block, error-updated), ``(d_out,)``.

        ``j`` is the column's position in processing order; ``U`` the whole ``(d_in, d_in)``
        inverse-Hessian Cholesky factor in processing order (``U[j, j]`` is this column's; SpQR
        scales errors by it and normalises its outlier threshold by its diagonal), on ``W``'s
        device; None for round-to-nearest. Returning ``W[:, i]`` for an entry gives it zero error
        (how sparse outliers take part in feedback).
        """

    def result(self, Q: Tensor) -> QuantizedWeight:
        """The container for the final quantized weight ``Q`` (original column order), whose
        columns are values this quantizer returned."""


@dataclass
class GPTQResult:
    """``Q``: dequantized weight in original order; ``qweight``: the container; ``damp``: the
    damping that made H positive definite (as a fraction of mean diag H); ``error``: the
    Hessian-weighted error ``tr(dW H dW^T)`` against the undamped ``H``."""

    Q: Tensor
    qweight: QuantizedWeight
    damp: float
    error: float


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` when ``t`` holds NaN or infinity."""
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} holds non-finite values (NaN or infinity)")


def hessian_error(W: Tensor, Q: Tensor, H: Tensor) -> float:
    """``tr((W - Q) H (W - Q)^T)``, the layer's output error (up to the 2/N factor of H)."""
    dW = (W - Q).to(H.dtype)
    return float(((dW @ H) * dW).sum())


def inverse_cholesky(H: Tensor, percdamp: float = 0.01, max_tries: int = 6) -> tuple[Tensor, float]:
    """Upper Cholesky factor ``U`` of ``(H + lambda I)^-1`` with ``lambda = damp * mean(diag H)``.

    Starts from ``damp = percdamp`` and multiplies it by 10 whenever a factorisation fails.

    Returns:
        ``(U, damp)``; ``U`` is ``(d, d)`` upper triangular in fp32.
    Raises:
        torch.linalg.LinAlgError: still not positive definite after ``max_tries``.
    """
    Hd = H.double()
    mean_diag = Hd.diagonal().mean()
    damp = percdamp
    for attempt in range(max_tries):
        Hdamp = Hd.clone()
        Hdamp.diagonal().add_(damp * mean_diag)
        L, info = torch.linalg.cholesky_ex(Hdamp)
        if int(info) == 0:
            Hinv = torch.cholesky_inverse(L)
            U, info = torch.linalg.cholesky_ex(Hinv, upper=True)
            if int(info) == 0:
                if attempt:
                    log.warning("Cholesky needed damping %.3g (asked %.3g)", damp, percdamp)
                return U.float(), damp
        damp *= 10
    raise torch.linalg.LinAlgError(
        f"Hessian is not positive definite even with damping {damp / 10:.3g} x mean(diag H)")


def quantize_weight(W: Tensor, H: Tensor, quantizer: ColumnQuantizer, *, blocksize: int = 128,
                    percdamp: float = 0.01, act_order: bool = False) -> GPTQResult:
    """GPTQ on one weight (or several weights sharing ``H``, stacked by rows).

    Args:
        W: ``(d_out, d_in)`` weight.
        H: ``(d_in, d_in)`` Hessian of the layer inputs.
        quantizer: the column quantizer (see the module docstring).
        blocksize: columns per lazy-update block.
        percdamp: initial damping as a fraction of mean(diag H); raised automatically on failure.
        act_order: process columns by decreasing diag H.
    Dead inputs (``H_ii = 0``) get ``H_ii = 1`` and ``W[:, i] = 0``.
    """
    check_finite("weight", W)
    check_finite("Hessian", H)
    d_out, d_in = W.shape
    if H.shape != (d_in, d_in):
        raise ValueError(f"Hessian shape {tuple(H.shape)} does not match weight input dim {d_in}")
    W0, H0 = W, H
    W = W.detach().clone().float()
    H = H.detach().clone()
    dead = H.diagonal() == 0
    H.diagonal()[dead] = 1
    W[:, dead] = 0
    m = max(1, getattr(quantizer, "block_multiple", 1))
    blocksize = -(-blocksize // m) * m
    perm = torch.argsort(H.diagonal(), descending=True) if act_order else torch.arange(d_in, device=W.device)
    W = W[:, perm]
    U, damp = inverse_cholesky(H[perm][:, perm], percdamp)
    quantizer.prepare(W, perm)
    loop_device = torch.device("cpu") if getattr(quantizer, "host_loop", False) else W.device
    for i1 in range(0, d_in, blocksize):
        i2 = min(i1 + blocksize, d_in)
        W1 = W[:, i1:i2].to(loop_device)  # a view (or a host copy): the block is quantized in place
        U1 = U[i1:i2, i1:i2].to(loop_device)
        Urow = U1 / U1.diagonal()[:, None]  # row i scaled by 1 / U_ii
        D = torch.empty(i2 - i1, d_out, device=loop_device, dtype=W.dtype)
        for i in range(i2 - i1):
            q = quantizer(W1, i, i1 + i, U)
            torch.sub(W1[:, i], q, out=D[i])
            W1[:, i:].addr_(D[i], Urow[i, i:], alpha=-1)  # leaves W1[:, i] = q (to rounding)
        if loop_device != W.device:
            W[:, i1:i2] = W1.to(W.device)
            D = D.to(W.device)
        if i2 < d_in:
            W[:, i2:].addmm_(D.T, U[i1:i2, i2:] / U[i1:i2, i1:i2].diagonal()[:, None], alpha=-1)
    Q = torch.empty_like(W)
    Q[:, perm] = W
    qweight = quantizer.result(Q)
    Q = qweight.dequantize()  # exactly what is stored
    return GPTQResult(Q, qweight, damp, hessian_error(W0.float(), Q, H0))


def round_to_nearest(W: Tensor, quantizer: ColumnQuantizer) -> tuple[Tensor, QuantizedWeight]:
    """The same column quantizer with no error feedback: ``q_j = Q(w_j)`` for every column.

    Returns ``(Q, qweight)``.
    """
    check_finite("weight", W)
    W = W.detach().float()
    perm = torch.arange(W.shape[1], device=W.device)
    quantizer.prepare(W, perm)
    qweight = quantizer.result(torch.stack([quantizer(W, j, j, None) for j in range(W.shape[1])], dim=1))
    return qweight.dequantize(), qweight

"""LRQ: low-rank weight-scaling matrices learned by block reconstruction (arXiv 2407.11534), with
FlexRound (arXiv 2306.00317) as its full-rank case.

For a weight ``W`` (d_out x d_in) and a b-bit asymmetric grid with per-row scale ``s`` (d_out,) and
integer zero ``z`` (d_out,), the quantized weight is

    S     = L U + r 1^T + 1 c^T                    (L: d_out x k, U: k x d_in, r: d_out, c: d_in)
    q     = clamp(round_ste(W / (s 1^T * exp(S))) + z, 0, 2^b - 1)
    W_hat = s 1^T * (q - z)

``round_ste`` rounds in the forward pass and passes the gradient straight through, so ``L``, ``U``,
``r``, ``c`` and ``log s`` are trained by :func:`lowbit.recon.finetune_block` on the block's output
error (``s = s0 * exp(log_ds)`` with ``log_ds`` initialised to 0, so that at initialisation ``s`` is the
min-max scale ``s0`` bit for bit; learning ``log_ds`` is learning ``log s`` up to a constant).
``exp(S)`` only moves each weight's rounding decision; what is stored is a plain
per-row uniform grid (codes ``q``, scales ``s``, zeros ``z``), whose dequantization is exactly
``W_hat`` (``s`` is rounded to fp16 in the forward pass, gradient straight through, so the
stored scale is exactly the trained one). FlexRound is the same map with a full trainable ``S2``
(d_out x d_in) in place of ``L U``.

Confirmed from the paper's abstract: low-rank weight-scaling matrices replacing FlexRound's full
matrix, learned by reconstructing each Transformer block's output; settings W8A8 (per-tensor
activations), W4A8 (per-token activations), weight-only low-bit. Confirmed from the authors' code
(github.com/onliwad101/FlexRound_LRQ, ``quant/UniformAffineQuantizer.py``, read through a mirror):
codes ``clamp(round_ste(W / exp(log s + L U + r 1^T + 1 c^T)), -z, 2^b - 1 - z)`` times ``s``, which is
the map above; ``s`` learned as ``log s``; ``L`` (d_out x 1024, 2048 when both dimensions are at least
8192) and ``r``, ``c`` initialised to zero; ``U`` by ``kaiming_uniform_(a=sqrt(5))``, i.e.
``U(-1/sqrt(d_in), 1/sqrt(d_in))`` (used here); ``z`` fixed; a per-row asymmetric grid. Their FlexRound
has a full matrix and a row vector only (no column vector); here FlexRound keeps ``c`` too (one code
path; a full ``S2`` can absorb it, so the function class is the same). Their code also falls back to
the full matrix for layers with one dimension above 4096 and the other not; here ``--rank`` applies to
every layer.
Chosen here: ``s`` and ``z`` initialised by min-max per row (:func:`lowbit.core.uniform.minmax_params`,
so at initialisation the quantizer is round-to-nearest exactly; the authors initialise by a grid search
minimising the L2.4 error); FlexRound's ``S2`` initialised to zero.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lowbit.core.formats import QuantizedWeight
from lowbit.core.uniform import check_width, minmax_params, round_to_dtype


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def lrq_codes(W: Tensor, scale: Tensor, zero: Tensor, S: Tensor, bits: int) -> Tensor:
    """Codes ``clamp(round_ste(W / (s 1^T * exp(S))) + z, 0, 2^b - 1)`` (float, differentiable by STE).

    Shapes: ``W``, ``S`` (d_out, d_in); ``scale`` ``s``, ``zero`` ``z`` (d_out,).
    """
    denom = scale[:, None] * torch.exp(S)
    return torch.clamp(round_ste(W / denom) + zero[:, None], 0, (1 << bits) - 1)


class LRQWeight(nn.Module):
    """A parametrization (``torch.nn.utils.parametrize``) whose forward is the fake-quantized weight
    ``W_hat`` of the module docstring. ``rank=None`` is FlexRound (a full ``S2``); ``rank=k`` is LRQ.

    Trainable: ``log_ds`` (d_out,), ``r`` (d_out,), ``c`` (d_in,), and ``L`` (d_out, k) with ``U``
    (k, d_in), or ``S2`` (d_out, d_in). Buffers: ``W`` (the full-precision weight), ``s0`` and ``zero`` (d_out,).
    """

    W: Tensor
    s0: Tensor
    zero: Tensor

    def __init__(self, W: Tensor, bits: int, rank: int | None, *, seed: int = 0) -> None:
        super().__init__()
        check_width(bits)
        d_out, d_in = W.shape
        if rank is not None and rank < 1:
            raise ValueError(f"rank must be at least 1 (or None for the full matrix), got {rank}")
        self.bits = bits
        W = W.detach().float()
        scale, zero = minmax_params(W, bits)
        self.register_buffer("W", W)
        self.register_buffer("s0", scale)
        self.register_buffer("zero", zero)
        self.log_ds = nn.Parameter(torch.zeros_like(scale))
        self.r = nn.Parameter(torch.zeros(d_out, device=W.device))
        self.c = nn.Parameter(torch.zeros(d_in, device=W.device))
        self.L: nn.Parameter | None = None
        self.U: nn.Parameter | None = None
        self.S2: nn.Parameter | None = None
        if rank is None:
            self.S2 = nn.Parameter(torch.zeros(d_out, d_in, device=W.device))
        else:
            g = torch.Generator().manual_seed(seed)
            self.L = nn.Parameter(torch.zeros(d_out, rank, device=W.device))
            U = (2 * torch.rand(rank, d_in, generator=g) - 1) / d_in ** 0.5  # kaiming_uniform_(a=sqrt(5))
            self.U = nn.Parameter(U.to(W.device))

    def trainable(self) -> list[nn.Parameter]:
        """The tensors to hand to :func:`lowbit.recon.finetune_block`."""
        return [p for p in (self.log_ds, self.r, self.c, self.L, self.U, self.S2) if p is not None]

    def scaling(self) -> Tensor:
        """``S = L U + r 1^T + 1 c^T`` (LRQ) or ``S2 + r 1^T + 1 c^T`` (FlexRound), (d_out, d_in)."""
        full = self.S2 if self.S2 is not None else self.L @ self.U  # type: ignore[operator]
        return full + self.r[:, None] + self.c[None, :]

    def scale(self) -> Tensor:
        """``s = s0 * exp(log_ds)`` rounded to fp16 (the stored width) with a straight-through
        gradient, (d_out,); ``s0`` is fp16-exact, so at ``log_ds = 0`` this is ``s0``."""
        s = self.s0 * torch.exp(self.log_ds)
        return s + (round_to_dtype(s.detach(), torch.float16, up=True) - s).detach()

    def codes(self) -> Tensor:
        return lrq_codes(self.W, self.scale(), self.zero, self.scaling(), self.bits)

    def forward(self, _: Tensor) -> Tensor:
        return self.scale()[:, None] * (self.codes() - self.zero[:, None])

    @torch.no_grad()
    def result(self) -> QuantizedWeight:
        """The stored per-row uniform weight: ``dequantize()`` equals :meth:`forward`'s ``W_hat``."""
        d_out, d_in = self.W.shape
        return QuantizedWeight("uniform", (d_out, d_in), self.codes().to(torch.uint8), self.bits,
                               scales=self.scale()[:, None].clone(), zeros=self.zero[:, None].clone(),
                               group_size=None)

"""Calibration statistics of a linear layer's inputs: the Hessian and per-channel activation stats.

For inputs x in R^{d_in} (tokens of every calibration window), GPTQ's layer objective
||W X - W_hat X||^2 has the Hessian (arXiv 2210.17323)

    H = (2 / N) * sum_t x_t x_t^T          (d_in x d_in),

accumulated as a running mean so that batches of any size can be added. Per-channel statistics
(CMPQ, arXiv 2410.13056) are the sum of squares (so ||X_c||_2 = sqrt(sumsq_c)), the mean of |x_c|
and the maximum of |x_c| over tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Temporarily set ``torch.set_float32_matmul_precision`` ("highest": true fp32; "high": TF32)."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def make_empty_hessian(d_in: int, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """A zero ``(d_in, d_in)`` Hessian accumulator in ``dtype`` (fp32, or fp64 for AQLM-grade sums)."""
    return torch.zeros(d_in, d_in, device=device, dtype=dtype)


def accumulate_hessian(H: Tensor, x: Tensor, n_seen: int) -> tuple[Tensor, int]:
    """Fold a batch of inputs into the running Hessian ``H = 2/N sum x x^T``.

    Args:
        H: ``(d_in, d_in)`` running Hessian over ``n_seen`` tokens (updated in place).
        x: ``(..., d_in)`` inputs; every leading index is one token.
        n_seen: tokens already in ``H``.
    Returns:
        ``(H, n_seen + m)`` with m the tokens in ``x``.
    """
    x = x.reshape(-1, x.shape[-1])
    m = x.shape[0]
    if m == 0:
        return H, n_seen
    total = n_seen + m
    H.mul_(n_seen / total)
    xs = x.to(H.dtype) * (2.0 / total) ** 0.5
    with matmul_precision("highest"):  # exact sums even when the forward pass runs in TF32
        H.addmm_(xs.T, xs)
    return H, total


@dataclass
class ActStats:
    """Per-channel statistics of a layer's inputs over ``n`` tokens (all shapes ``(d_in,)``)."""

    sumsq: Tensor
    sumabs: Tensor
    absmax: Tensor
    n: int = 0

    @classmethod
    def empty(cls, d_in: int, device: torch.device | str = "cpu") -> ActStats:
        z = torch.zeros(d_in, device=device, dtype=torch.float64)
        return cls(z.clone(), z.clone(), torch.zeros(d_in, device=device, dtype=torch.float32))

    def update(self, x: Tensor) -> None:
        """Fold ``x`` (``(..., d_in)``) into the statistics."""
        a = x.reshape(-1, x.shape[-1]).float().abs()  # per-batch sums in fp32, totals in fp64
        self.sumsq += (a * a).sum(0)
        self.sumabs += a.sum(0)
        self.absmax = torch.maximum(self.absmax, a.amax(0))
        self.n += a.shape[0]

    @property
    def norm(self) -> Tensor:
        """||X_c||_2 per channel."""
        return self.sumsq.sqrt().float()

    @property
    def mean_abs(self) -> Tensor:
        return (self.sumabs / max(self.n, 1)).float()


@dataclass
class LayerStats:
    """Everything calibration gathers for one input of a block: the Hessian and channel stats.

    Linear layers that read the same input (q, k and v; gate and up) share one ``LayerStats``.
    """

    H: Tensor
    act: ActStats

    @classmethod
    def empty(cls, d_in: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> LayerStats:
        return cls(make_empty_hessian(d_in, device, dtype), ActStats.empty(d_in, device))

    def update(self, x: Tensor) -> None:
        x = x.detach()
        self.H, _ = accumulate_hessian(self.H, x, self.act.n)
        self.act.update(x)

    @property
    def n_tokens(self) -> int:
        return self.act.n

"""Hypothesis strategies shared by every package's tests (needs ``hypothesis``, imported lazily).

- :func:`weights`: float32 matrices with heavy-tailed outliers (Student-t body plus a few large
  entries), the distribution LLM weights have.
- :func:`shapes`: ``(d_out, d_in)`` with ``d_in`` divisible by a drawn group size.
- :func:`hessians`: symmetric positive semi-definite ``X^T X / n`` from random activations with
  a few dominant channels.
- :class:`ToyBlock`, :func:`block_data`: a small residual MLP block called like a decoder block, and
  its inputs with a teacher's outputs, for the tests of block reconstruction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .hf import BlockInputs


def heavy_tailed(shape: tuple[int, ...], seed: int, df: int = 4, outlier_frac: float = 0.005,
                 outlier_scale: float = 10.0) -> Tensor:
    """Student-t(df) entries, t = z / sqrt(chi2_df / df), times 0.02, with ``outlier_frac`` of them
    multiplied by ``outlier_scale``; deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g)
    chi2 = (torch.randn((df, *shape), generator=g) ** 2).sum(0)
    w = 0.02 * z / torch.sqrt(chi2 / df)
    mask = torch.rand(shape, generator=g) < outlier_frac
    return torch.where(mask, w * outlier_scale, w)


def random_hessian(d: int, seed: int, n: int | None = None) -> Tensor:
    """``X^T X / n`` for ``n`` (default 4d) random tokens with a few dominant channels, (d, d) fp32."""
    g = torch.Generator().manual_seed(seed)
    n = n or 4 * d
    x = torch.randn(n, d, generator=g)
    x = x * (1 + 9 * (torch.rand(d, generator=g) < 0.05))
    return x.T @ x / n


def shapes(max_out: int = 64, group_sizes: tuple[int, ...] = (4, 8, 16), max_groups: int = 6) -> Any:
    """Strategy for ``(d_out, d_in, group_size)`` with ``d_in % group_size == 0``."""
    from hypothesis import strategies as st

    return st.builds(
        lambda o, g, k: (o, g * k, g),
        st.integers(1, max_out), st.sampled_from(group_sizes), st.integers(1, max_groups))


def weights(shape: tuple[int, int] | None = None) -> Any:
    """Strategy for heavy-tailed float32 weights (a fixed ``shape`` or drawn from :func:`shapes`)."""
    from hypothesis import strategies as st

    if shape is not None:
        return st.integers(0, 2**31 - 1).map(lambda s: heavy_tailed(shape, s))
    return st.tuples(shapes(), st.integers(0, 2**31 - 1)).map(
        lambda t: heavy_tailed((t[0][0], t[0][1]), t[1]))


def hessians(d: int) -> Any:
    """Strategy for random (d, d) Hessians from :func:`random_hessian`."""
    from hypothesis import strategies as st

    return st.integers(0, 2**31 - 1).map(lambda s: random_hessian(d, s))


class ToyBlock(nn.Module):
    """A residual MLP block with a norm, called like a decoder block: ``block(h, **kw) -> (h',)``."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)

    def forward(self, h: Tensor, **_: object) -> tuple[Tensor]:
        return (h + self.down(torch.relu(self.up(self.norm(h)))),)


def block_data(teacher: nn.Module, n: int, d: int, seed: int) -> tuple[BlockInputs, BlockInputs]:
    """``n`` batches of ``(4, 8, d)`` random inputs and the teacher block's outputs on them."""
    g = torch.Generator().manual_seed(seed)
    x = BlockInputs(torch.device("cpu"), [torch.randn(4, 8, d, generator=g) for _ in range(n)], [{}] * n)
    with torch.no_grad():
        y = BlockInputs(x.device, [teacher(h)[0] for h in x.hidden], x.kwargs)
    return x, y

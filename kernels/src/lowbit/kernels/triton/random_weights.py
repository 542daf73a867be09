"""Random QuantizedWeights of every format, built directly on a device (no quantizer run): random codes
and value sets of the right shapes, for the kernel tests and ``benchmarks/gpu_kernels.py``.
Deterministic for a seed (a CPU generator draws the small tensors; codes are drawn on ``device``)."""

from __future__ import annotations

import torch
from torch import Tensor

from lowbit.core.formats import QuantizedWeight, SparseOutliers


def _gen(seed: int, device: torch.device | str) -> torch.Generator:
    return torch.Generator(device=torch.device(device)).manual_seed(seed)


def random_outliers(shape: tuple[int, int], frac: float, seed: int, device: torch.device | str = "cpu",
                    count: int | None = None) -> SparseOutliers | None:
    """``round(frac d_out d_in)`` (or ``count``) distinct positions with N(0, 1) fp16 values; None for none."""
    n = count if count is not None else round(frac * shape[0] * shape[1])
    if n <= 0:
        return None
    g = _gen(seed, device)
    idx = torch.randperm(shape[0] * shape[1], generator=g, device=device)[:n]
    return SparseOutliers(idx // shape[1], idx % shape[1], torch.randn(n, generator=g, device=device).half())


def random_uniform(d_out: int, d_in: int, bits: int, group_size: int, seed: int = 0,
                   device: torch.device | str = "cpu", act_order: bool = False, outlier_frac: float = 0.0,
                   n_outliers: int | None = None) -> QuantizedWeight:
    """Uniform codes, scales in [0.005, 0.015), integer zeros; ``act_order``: a random ``g_idx`` with
    groups of ``group_size`` columns."""
    g = _gen(seed, device)
    n_groups = d_in // group_size
    g_idx = None
    if act_order:
        perm = torch.randperm(d_in, generator=g, device=device)
        g_idx = torch.empty(d_in, dtype=torch.int64, device=device)
        g_idx[perm] = torch.arange(d_in, device=device) // group_size
    codes = torch.randint(0, 1 << bits, (d_out, d_in), generator=g, device=device, dtype=torch.uint8)
    scales = 0.005 + 0.01 * torch.rand(d_out, n_groups, generator=g, device=device)
    zeros = torch.randint(0, 1 << bits, (d_out, n_groups), generator=g, device=device).float()
    return QuantizedWeight("uniform", (d_out, d_in), codes, bits, scales=scales.half(), zeros=zeros,
                           group_size=group_size, g_idx=g_idx,
                           outliers=random_outliers((d_out, d_in), outlier_frac, seed + 1, device, n_outliers))


def random_table(d_out: int, d_in: int, bits: int | Tensor, seed: int = 0, device: torch.device | str = "cpu",
                 outlier_frac: float = 0.0, n_outliers: int | None = None) -> QuantizedWeight:
    """Per-column tables of 16 entries (sorted N(0, 0.02)); ``bits`` an int or a ``(d_in,)`` tensor of widths."""
    g = _gen(seed, device)
    widths = bits.to(device) if isinstance(bits, Tensor) else torch.full((d_in,), int(bits), device=device)
    codes = (torch.rand(d_out, d_in, generator=g, device=device) * (2.0 ** widths)).long().to(torch.uint8)
    tables = (0.02 * torch.randn(d_in, 16, generator=g, device=device)).sort(1).values.half()
    return QuantizedWeight("table", (d_out, d_in), codes, bits, tables=tables,
                           outliers=random_outliers((d_out, d_in), outlier_frac, seed + 1, device, n_outliers))


def random_widths(d_in: int, choices: tuple[int, ...], seed: int = 0, device: torch.device | str = "cpu") -> Tensor:
    """``(d_in,)`` per-column widths drawn uniformly from ``choices`` (CLAQ / CMPQ-like mixes)."""
    g = _gen(seed, device)
    c = torch.tensor(choices, device=device)
    return c[torch.randint(0, len(choices), (d_in,), generator=g, device=device)]


def random_binary(d_out: int, d_in: int, bits: int, group_size: int, seed: int = 0, device: torch.device | str = "cpu",
                  act_order: bool = False, outlier_frac: float = 0.0) -> QuantizedWeight:
    """Binary codes with decreasing positive coefficients (alpha_i = a 2^-i) and offsets per (row, group)."""
    g = _gen(seed, device)
    n_groups = d_in // group_size
    a = 0.01 * (0.5 + torch.rand(d_out, n_groups, 1, generator=g, device=device))
    alphas = a * 0.5 ** torch.arange(bits, device=device)
    offsets = 0.005 * torch.randn(d_out, n_groups, generator=g, device=device)
    codes = torch.randint(0, 1 << bits, (d_out, d_in), generator=g, device=device, dtype=torch.uint8)
    g_idx = None
    if act_order:
        perm = torch.randperm(d_in, generator=g, device=device)
        g_idx = torch.empty(d_in, dtype=torch.int64, device=device)
        g_idx[perm] = torch.arange(d_in, device=device) // group_size
    return QuantizedWeight("binary", (d_out, d_in), codes, bits, group_size=group_size, g_idx=g_idx,
                           alphas=alphas.half(), offsets=offsets.half(),
                           outliers=random_outliers((d_out, d_in), outlier_frac, seed + 1, device))


def random_additive(d_out: int, d_in: int, n_codebooks: int, bits: int, seed: int = 0,
                    device: torch.device | str = "cpu", outlier_frac: float = 0.0,
                    n_outliers: int | None = None) -> QuantizedWeight:
    """AQLM-shaped additive codes (groups of 8): ``(d_out, d_in / 8, M)`` codes, ``(M, 2^B, 8)`` N(0, 1)
    codebooks, per-row scales around 0.01."""
    g = _gen(seed, device)
    codes = torch.randint(0, 1 << bits, (d_out, d_in // 8, n_codebooks), generator=g, device=device)
    codebooks = torch.randn(n_codebooks, 1 << bits, 8, generator=g, device=device).half()
    scales = 0.01 * (0.5 + torch.rand(d_out, generator=g, device=device))
    return QuantizedWeight("additive", (d_out, d_in), codes, bits, scales=scales.half(), group_size=8,
                           codebooks=codebooks,
                           outliers=random_outliers((d_out, d_in), outlier_frac, seed + 1, device, n_outliers))

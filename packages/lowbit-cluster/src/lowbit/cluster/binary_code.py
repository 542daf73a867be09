"""Binary-coding (BCQ) value sets: ``2^k`` values ``o + sum_i alpha_i s_i``, ``s_i in {-1, +1}``.

A k-bit binary code spans the values :func:`lowbit.core.formats.binary_code_values` (code ``j``
has ``s_i = 2 b_i - 1``, ``b_i`` bit ``k - 1 - i`` of ``j``); LUT-based kernels (LUT-GEMM) run it.
Two fits:

- :func:`fit_binary_code`: the **exact** weighted least-squares fit to a histogram over a few
  levels (GPTQT, arXiv 2407.02891, step two: the ``2^n`` integer levels of a step-one linear grid,
  weighted by how many weights sit on each):

      min_{o, alpha, a}  sum_l c_l (L_l - o - sum_i alpha_i s_i(a(l)))^2,   a: levels -> codes.

  At the optimum every level sits on its nearest value, so in 1-D the assignment is monotone:
  sorted levels are cut into ``2^k`` contiguous (possibly empty) runs taken by the codes in
  ascending value order. With ``alpha_1 >= ... >= alpha_k >= 0`` (any code is one after flipping
  signs and reordering, which only relabels codes) that order is the code order for k <= 2; for
  k = 3 codes 3 (-a1 + a2 + a3) and 4 (a1 - a2 - a3) swap when ``a1 < a2 + a3`` and every other
  pair is fixed, so there are two orders. For each order and each cut (``C(m + 2^k - 1, 2^k - 1)``
  of them: 165 for 8 levels and k = 2, 969 for 16 levels and k = 2, 245,157 for 16 levels and
  k = 3), ``(o, alpha)`` solves a (k + 1) x (k + 1) normal system built from run sums; the best
  candidate is the optimum. Batched over problems; candidates in chunks.
- :func:`fit_binary_code_values`: the usual BCQ fit to raw values (no step one): greedy residual
  signs (``alpha_i = mean |r|``, ``s_i = sign r``) around the mean, then alternating least squares
  for ``(o, alpha)`` and nearest-value codes; the error never increases.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from lowbit.core.formats import binary_code_values

MAX_EXACT_BITS = 3


@dataclass
class BinaryCode:
    """``alphas`` ``(P, k)`` (sorted, non-negative), ``offsets`` ``(P,)`` and the weighted squared
    error ``error`` ``(P,)`` of each problem's fit."""

    alphas: Tensor
    offsets: Tensor
    error: Tensor

    def values(self) -> Tensor:
        """``(P, 2^k)`` values spanned, in code order."""
        return binary_code_values(self.alphas, self.offsets)


def code_signs(k: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(2^k, k)`` signs ``s_i(j) = 2 b_i(j) - 1`` of every code ``j``."""
    j = torch.arange(1 << k)
    return (((j[:, None] >> torch.arange(k - 1, -1, -1)) & 1) * 2 - 1).to(dtype)


def _orders(k: int) -> list[list[int]]:
    """Every ascending order of the codes' values for ``alpha_1 >= ... >= alpha_k >= 0``."""
    natural = list(range(1 << k))
    if k <= 2:
        return [natural]
    if k == 3:
        return [natural, [0, 1, 2, 4, 3, 5, 6, 7]]
    raise ValueError(f"the exact binary-code fit supports k <= {MAX_EXACT_BITS} bits, got {k}")


@lru_cache(maxsize=16)
def _cuts(m: int, n_codes: int) -> Tensor:
    """``(n_cuts, n_codes + 1)`` int64 run boundaries ``0 = t_0 <= t_1 <= ... <= t_K = m``."""
    inner = torch.tensor(list(itertools.combinations_with_replacement(range(m + 1), n_codes - 1)),
                         dtype=torch.int64).reshape(-1, n_codes - 1)
    n = inner.shape[0]
    return torch.cat([torch.zeros(n, 1, dtype=torch.int64), inner, torch.full((n, 1), m, dtype=torch.int64)], 1)


def spd_solve(M: Tensor, b: Tensor) -> Tensor:
    """Solve ``M x = b`` for many small symmetric positive definite ``M`` ``(..., n, n)``, ``b``
    ``(..., n)``: a Cholesky factorisation written out elementwise (n <= 4 here), far faster than
    one LAPACK call per system."""
    n = M.shape[-1]
    L = [[M[..., 0, 0] * 0 for _ in range(n)] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            acc = M[..., i, j] - sum((L[i][t] * L[j][t] for t in range(j)), M[..., i, j] * 0)
            L[i][j] = acc.clamp_min(1e-300).sqrt() if i == j else acc / L[j][j]
    y: list[Tensor] = []
    for i in range(n):
        y.append((b[..., i] - sum((L[i][t] * y[t] for t in range(i)), b[..., i] * 0)) / L[i][i])
    x: list[Tensor] = [b[..., 0] * 0] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum((L[t][i] * x[t] for t in range(i + 1, n)), b[..., i] * 0)) / L[i][i]
    return torch.stack(x, -1)


def _canonical(theta: Tensor) -> tuple[Tensor, Tensor]:
    """``(alphas, offsets)`` with non-negative alphas sorted in decreasing order (same value set)."""
    alphas = theta[:, 1:].abs().sort(dim=1, descending=True).values
    return alphas, theta[:, 0]


def fit_binary_code(counts: Tensor, k: int, levels: Tensor | None = None, *, chunk: int = 1 << 22) -> BinaryCode:
    """The exact k-bit binary code of a level histogram (module docstring).

    Args:
        counts: ``(P, m)`` non-negative weights of ``m`` levels, one problem per row.
        k: code bits, 1..3.
        levels: ``(m,)`` ascending level values (default ``0, 1, ..., m - 1``: integer levels).
        chunk: (problem, candidate) pairs evaluated at once.
    Returns:
        :class:`BinaryCode` in float64 on ``counts.device``; ``error`` is the weighted squared error
        with every level on its nearest value.
    """
    if counts.dim() != 2:
        raise ValueError(f"counts must be (P, m), got shape {tuple(counts.shape)}")
    if not 1 <= k <= MAX_EXACT_BITS:
        raise ValueError(f"the exact binary-code fit supports k in 1..{MAX_EXACT_BITS}, got {k}")
    dev = counts.device
    P, m = counts.shape
    c = counts.to(torch.float64)
    L = torch.arange(m, dtype=torch.float64, device=dev) if levels is None else levels.to(dev, torch.float64)
    if L.shape != (m,) or bool((L[1:] < L[:-1]).any()):
        raise ValueError("levels must be an ascending (m,) tensor")
    zero = torch.zeros(P, 1, dtype=torch.float64, device=dev)
    pc, ps = torch.cat([zero, c.cumsum(1)], 1), torch.cat([zero, (c * L).cumsum(1)], 1)  # (P, m + 1)
    total_sq = (c * L * L).sum(1)
    K = 1 << k
    cuts = _cuts(m, K).to(dev)
    signs = code_signs(k).to(dev)
    ridge = 1e-12 * (pc[:, -1] * (1 + L.abs().max() ** 2)).clamp_min(1e-300)
    eye = torch.eye(k + 1, dtype=torch.float64, device=dev)
    best_err = torch.full((P,), float("inf"), dtype=torch.float64, device=dev)
    best_theta = torch.zeros(P, k + 1, dtype=torch.float64, device=dev)
    for order in _orders(k):
        V = torch.cat([torch.ones(K, 1, dtype=torch.float64, device=dev), signs[order]], 1)  # (K, k + 1)
        VV = V[:, :, None] * V[:, None, :]  # (K, k + 1, k + 1)
        step = max(1, chunk // P)
        for s in range(0, cuts.shape[0], step):
            t = cuts[s: s + step]  # (n, K + 1)
            C = pc[:, t[:, 1:]] - pc[:, t[:, :-1]]  # (P, n, K) weight of each code's run
            S = ps[:, t[:, 1:]] - ps[:, t[:, :-1]]
            M = torch.einsum("pnj,jab->pnab", C, VV) + ridge[:, None, None, None] * eye
            rhs = torch.einsum("pnj,ja->pna", S, V)
            theta = spd_solve(M, rhs)
            # sum_l c_l (L_l - V_a(l) theta)^2 for this assignment, at this theta
            err = total_sq[:, None] - 2 * (theta * rhs).sum(-1) + torch.einsum("pna,pnab,pnb->pn", theta, M, theta)
            err_min, idx = err.min(1)
            better = err_min < best_err
            best_err = torch.where(better, err_min, best_err)
            best_theta = torch.where(better[:, None], theta[torch.arange(P, device=dev), idx], best_theta)
    alphas, offsets = _canonical(best_theta)
    return BinaryCode(alphas, offsets, _histogram_error(c, L, alphas, offsets))


def _histogram_error(c: Tensor, L: Tensor, alphas: Tensor, offsets: Tensor) -> Tensor:
    """``(P,)`` weighted squared error of levels ``L`` on their nearest code value."""
    values = binary_code_values(alphas, offsets)  # (P, K)
    d = (L[None, :, None] - values[:, None, :]).abs().amin(2)
    return (c * d * d).sum(1)


def nearest_code(x: Tensor, values: Tensor) -> Tensor:
    """``(P, m)`` int64 index of the nearest of ``values`` ``(P, K)`` (any order) to each ``x``
    ``(P, m)``; ties go to the lower index."""
    return (x[:, :, None] - values[:, None, :]).abs().argmin(2)


def fit_binary_code_values(x: Tensor, k: int, *, iters: int = 20, weights: Tensor | None = None) -> BinaryCode:
    """BCQ of raw values: greedy init, then alternating least squares (module docstring).

    Args:
        x: ``(P, m)`` values, one problem per row.
        k: code bits (>= 1).
        iters: alternating steps at most (stops early when the codes stop changing).
        weights: optional ``(P, m)`` non-negative weights of the squared error.
    Returns:
        :class:`BinaryCode` (float64) with the weighted squared error of nearest-value codes.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (P, m), got shape {tuple(x.shape)}")
    xd = x.to(torch.float64)
    w = torch.ones_like(xd) if weights is None else weights.to(xd)
    signs = code_signs(k).to(xd.device)
    V = torch.cat([torch.ones(1 << k, 1, dtype=xd.dtype, device=xd.device), signs], 1)  # (K, k + 1)
    mean = (w * xd).sum(1) / w.sum(1).clamp_min(1e-300)
    r = xd - mean[:, None]
    alphas = []
    for _ in range(k):
        a = (w * r.abs()).sum(1) / w.sum(1).clamp_min(1e-300)
        alphas.append(a)
        r = r - a[:, None] * torch.where(r >= 0, 1.0, -1.0)
    theta = torch.cat([mean[:, None], torch.stack(alphas, 1)], 1)
    codes = None
    eye = torch.eye(k + 1, dtype=xd.dtype, device=xd.device)
    for _ in range(iters):
        new = nearest_code(xd, theta @ V.T)
        if codes is not None and torch.equal(new, codes):
            break
        codes = new
        A = V[codes]  # (P, m, k + 1)
        M = torch.einsum("pm,pma,pmb->pab", w, A, A)
        rhs = torch.einsum("pm,pma,pm->pa", w, A, xd)
        ridge = 1e-12 * M.diagonal(dim1=1, dim2=2).sum(1).clamp_min(1e-300)
        sol = torch.linalg.solve(M + ridge[:, None, None] * eye, rhs)
        old_err = _values_error(xd, w, theta @ V.T)
        theta = torch.where((_values_error(xd, w, sol @ V.T) <= old_err)[:, None], sol, theta)
    alphas_, offsets = _canonical(theta)
    return BinaryCode(alphas_, offsets, _values_error(xd, w, binary_code_values(alphas_, offsets)))


def _values_error(x: Tensor, w: Tensor, values: Tensor) -> Tensor:
    d = (x[:, :, None] - values[:, None, :]).abs().amin(2)
    return (w * d * d).sum(1)

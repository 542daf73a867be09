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
  pair is fixed, so there are two orders. For each order and each cut, ``(o, alpha)`` solves a
  (k + 1) x (k + 1) normal system ``M theta = r`` built from run sums, and the error is
  ``sum_l c_l L_l^2 - theta . r``; the best candidate is the optimum. Exact search, made fast:

  1. Levels of zero weight change nothing: each problem keeps only its ``m'`` used levels
     (problems with the same ``m'`` are batched), ``C(m' + 2^k - 1, 2^k - 1)`` cuts (245,157 for
     16 levels and k = 3, 50,388 for 12).
  2. Bound: a cut's error is at least the sum over its runs of the run's weighted variance (each
     run's best single value is its mean), ``sum_j (Q_j - S_j^2 / C_j)`` from prefix sums of
     ``c, c L, c L^2``, the same for both orders. It splits into a prefix part (runs
     ``0..2^k/2 - 1``) and a suffix part, each tabulated once per problem (4,845 entries for 16
     levels), so bounding a cut is two lookups and an add.
  3. The 16 cuts of smallest bound are solved for an upper bound ``U``; then only cuts with
     bound ``<= U + 1e-9 sum_l c_l L_l^2`` (levels centred on their mean; the margin is far
     above float64 rounding) are solved (about 0.3% of cuts on
     GPTQT's 4-bit histograms), so no cut that could beat ``U`` is skipped: still exact.
- :func:`fit_binary_code_values`: the usual BCQ fit to raw values (no step one): greedy residual
  signs (``alpha_i = mean |r|``, ``s_i = sign r``) around the mean, then alternating least squares
  for ``(o, alpha)`` and nearest-value codes; the error never increases.
"""

from __future__ import annotations

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


@lru_cache(maxsize=64)
def _cut_halves(m: int, n_codes: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every cut ``(n, K + 1)`` (int64 run boundaries ``0 = t_0 <= t_1 <= ... <= t_K = m``), split at
    ``h = K // 2``: the distinct prefixes ``t_0..t_h`` ``(n_a, h + 1)``, the distinct suffixes
    ``t_h..t_K`` ``(n_b, K - h + 1)``, and ``(n, 2)`` each cut's prefix and suffix index."""
    t = torch.zeros(1, 1, dtype=torch.int64)  # t_0 = 0; then each t_{j+1} in t_j..m, lexicographic
    for _ in range(n_codes - 1):
        last = t[:, -1]
        rep = torch.repeat_interleave(torch.arange(t.shape[0]), m + 1 - last)
        start = torch.cumsum(m + 1 - last, 0) - (m + 1 - last)
        t = torch.cat([t[rep], (last[rep] + torch.arange(rep.shape[0]) - start[rep])[:, None]], 1)
    cuts = torch.cat([t, torch.full((t.shape[0], 1), m, dtype=torch.int64)], 1)
    h, base = n_codes // 2, (m + 1) ** torch.arange(n_codes + 1)
    pre_key, pi = torch.unique((cuts[:, : h + 1] * base[: h + 1]).sum(1), return_inverse=True)
    suf_key, si = torch.unique((cuts[:, h:] * base[: n_codes + 1 - h]).sum(1), return_inverse=True)
    pre = pre_key[:, None] // base[: h + 1] % (m + 1)  # decode the keys back to boundaries
    suf = suf_key[:, None] // base[: n_codes + 1 - h] % (m + 1)
    return cuts.to(device), pre.to(device), suf.to(device), torch.stack([pi, si], 1).to(device)


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


def fit_binary_code(counts: Tensor, k: int, levels: Tensor | None = None, *, chunk: int | None = None) -> BinaryCode:
    """The exact k-bit binary code of a level histogram: every cut, pruned by a bound (module docstring).

    Args:
        counts: ``(P, m)`` non-negative weights of ``m`` levels, one problem per row.
        k: code bits, 1..3.
        levels: ``(m,)`` ascending level values (default ``0, 1, ..., m - 1``: integer levels).
        chunk: (problem, cut) pairs bounded at once (memory: about 20 bytes each); default 2^27 on a
            GPU (few large launches), 2^22 elsewhere.
    Returns:
        :class:`BinaryCode` in float64 on ``counts.device``; ``error`` is the weighted squared error
        with every level on its nearest value.
    """
    if chunk is None:
        chunk = 1 << (27 if counts.is_cuda else 22)
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
    used = c > 0
    n_used = used.sum(1)
    theta = torch.zeros(P, k + 1, dtype=torch.float64, device=dev)  # (o, alpha); all-zero rows stay 0
    for mu in n_used.unique().tolist():  # problems with the same number of used levels, together
        if mu == 0:
            continue
        rows = (n_used == mu).nonzero()[:, 0]
        cols = used[rows].nonzero()[:, 1].reshape(-1, mu)  # ascending within each row
        theta[rows] = _fit_used_levels(c[rows].gather(1, cols), L[cols], k, chunk)
    alphas, offsets = _canonical(theta)
    return BinaryCode(alphas, offsets, _histogram_error(c, L, alphas, offsets))


def _fit_used_levels(c: Tensor, L: Tensor, k: int, chunk: int, n_seed: int = 16) -> Tensor:
    """``(P, k + 1)`` optimal ``(o, alpha)`` (any signs and order) of ``P`` histograms with positive
    weights ``c`` ``(P, m)`` on ascending levels ``L`` ``(P, m)``: bound every cut, solve the
    ``n_seed`` cuts of smallest bound for an upper bound ``U``, then every cut whose bound is <= U."""
    P, m = c.shape
    dev = c.device
    K = 1 << k
    shift = (c * L).sum(1) / c.sum(1)  # centre the levels: smaller sums, less cancellation
    L = L - shift[:, None]
    zero = torch.zeros(P, 1, dtype=torch.float64, device=dev)
    pc, ps, pq = (torch.cat([zero, x.cumsum(1)], 1) for x in (c, c * L, c * L * L))  # (P, m + 1)
    total_sq = pq[:, -1]
    run_c, run_s = pc[:, None, :] - pc[:, :, None], ps[:, None, :] - ps[:, :, None]  # run [a, b): [:, a, b]
    var = (pq[:, None, :] - pq[:, :, None] - run_s * run_s / run_c.clamp_min(1e-300)).clamp_min(0)
    cuts, pre, suf, halves = _cut_halves(m, K, dev)
    A, B = _runs_variance(var, pre), _runs_variance(var, suf)  # (P, n_a), (P, n_b)
    signs = code_signs(k).to(dev)
    designs = []
    for order in _orders(k):
        V = torch.cat([torch.ones(K, 1, dtype=torch.float64, device=dev), signs[order]], 1)  # (K, k + 1)
        designs.append((V, (V[:, :, None] * V[:, None, :]).reshape(K, -1)))
    ridge = 1e-12 * pc[:, -1] * (1 + L.abs().amax(1) ** 2)
    tol = 1e-9 * total_sq  # far above rounding in the bounds and errors (float64 on centred levels)
    sums = (pc, ps, total_sq, ridge)
    n = cuts.shape[0]
    theta = torch.empty(P, k + 1, dtype=torch.float64, device=dev)
    step = max(1, chunk // n)
    for s in range(0, P, step):
        p = torch.arange(s, min(s + step, P), device=dev)
        bound = A[p][:, halves[:, 0]] + B[p][:, halves[:, 1]]  # (p, n) lower bound of each cut's error
        seed = bound.topk(min(n_seed, n), dim=1, largest=False).indices  # (p, n_seed)
        err, th = _solve_cuts(sums, p[:, None].expand_as(seed).reshape(-1), cuts[seed.reshape(-1)], k, designs)
        best_err, j = err.reshape(len(p), -1).min(1)
        best = th.reshape(len(p), -1, k + 1)[torch.arange(len(p), device=dev), j]
        pi, ci = (bound <= (best_err + tol[p])[:, None]).nonzero(as_tuple=True)  # the survivors
        solve_step = max(1, chunk // 16)
        for q in range(0, pi.shape[0], solve_step):
            a, cut = pi[q: q + solve_step], ci[q: q + solve_step]
            err, th = _solve_cuts(sums, p[a], cuts[cut], k, designs)
            before = best_err[a]
            best_err.scatter_reduce_(0, a, err, "amin")
            win = (err == best_err[a]) & (err < before)
            best[a[win]] = th[win]
        theta[p] = best
    theta[:, 0] += shift
    return theta


def _runs_variance(var: Tensor, bounds: Tensor) -> Tensor:
    """``(P, n)`` sum over the runs ``[t_j, t_{j+1})`` of ``bounds`` ``(n, r + 1)`` of their weighted
    variance ``var`` ``(P, m + 1, m + 1)``."""
    width = var.shape[-1]
    return var.reshape(var.shape[0], -1)[:, bounds[:, :-1] * width + bounds[:, 1:]].sum(-1)


def _solve_cuts(sums: tuple[Tensor, ...], p: Tensor, t: Tensor, k: int,
                designs: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Least squares of problems ``p`` ``(Q,)`` on cuts ``t`` ``(Q, K + 1)`` for every code order:
    ``(Q,)`` the smallest error ``total_sq - theta . rhs - ridge |theta|^2`` and its ``theta``."""
    pc, ps, total_sq, ridge = (x[p] for x in sums)
    C = pc.gather(1, t[:, 1:]) - pc.gather(1, t[:, :-1])  # (Q, K) weight and weighted sum of each run
    S = ps.gather(1, t[:, 1:]) - ps.gather(1, t[:, :-1])
    eye = torch.eye(k + 1, dtype=torch.float64, device=t.device)
    best_err, best_theta = None, None
    for V, VV in designs:
        M = (C @ VV).reshape(-1, k + 1, k + 1) + ridge[:, None, None] * eye
        rhs = S @ V
        theta = spd_solve(M, rhs)
        err = total_sq - (theta * rhs).sum(-1) - ridge * (theta * theta).sum(-1)
        if best_err is None or best_theta is None:
            best_err, best_theta = err, theta
        else:
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_theta = torch.where(better[:, None], theta, best_theta)
    assert best_err is not None and best_theta is not None
    return best_err, best_theta


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

"""Batched, weighted 1-D k-means: many independent scalar clustering problems solved at once.

CLAQ (column-level adaptive quantization, arXiv 2405.17233) fits, for every column ``w_i`` of a
weight matrix (after GPTQ error feedback has updated it), a set of ``k = 2^b`` scalar centroids and
snaps each weight to its nearest centroid. A 7B model needs about a million such fits; the reference
runs scikit-learn once per column. :func:`kmeans_1d` solves ``n`` problems of ``m`` points each in one
call with batched tensor ops on whatever device ``x`` lives on.

Problem ``i`` (one row of ``x``) minimises the weighted within-cluster sum of squares

    J_i(c, a) = sum_j w_ij (x_ij - c_{i, a_ij})^2,      c_i in R^k,  a_ij in {0, ..., k-1},

by Lloyd's algorithm (assign every point to its nearest centroid, move every centroid to the
weighted mean ``sum_{j: a_j = l} w_j x_j / sum_{j: a_j = l} w_j`` of its points), started from a
k-means++ seeding (Arthur & Vassilvitskii 2007) in its greedy form as used by scikit-learn.

How 1-D is exploited (torch backend). Each problem's points are sorted once, O(m log m), and three
weighted prefix sums are kept in float64:

    P0[j] = sum_{i<j} w_i,   P1[j] = sum_{i<j} w_i x_i,   P2[j] = sum_{i<j} w_i x_i^2.

For sorted centroids the clusters are contiguous runs of sorted points separated by the centroid
midpoints, so the ``k - 1`` run boundaries come from one ``torch.searchsorted`` of the midpoints into
the sorted points (O(k log m)); the weight, mean and cost of run ``[lo, hi)`` around ``c`` are
O(1) segment sums:

    W = P0[hi] - P0[lo],   mean = (P1[hi] - P1[lo]) / W,
    cost = (P2[hi] - P2[lo]) - 2 c (P1[hi] - P1[lo]) + c^2 W.

A Lloyd iteration therefore costs O(k log m) per problem instead of O(m k), the k-means++ sampling
(``w D^2``-proportional) is an inverse-CDF search over these segment costs, and the greedy trial of a
candidate centroid costs O(log m) (only the run of its two neighbours changes). Points are centred on
their problem's mid-range before the prefix sums to limit cancellation.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

MAX_K = 256
BACKENDS = ("torch", "numpy", "faiss")
INITS = ("kmeans++", "quantile")
DEFAULT_CHUNK_ELEMENTS = 1 << 24


class KMeans1D(NamedTuple):
    """Result of :func:`kmeans_1d` for ``n`` problems of ``m`` points and ``k`` centroids.

    Attributes:
        centroids: ``(n, k)`` sorted ascending along ``k``, on ``x``'s device; dtype ``x.dtype``
            promoted to at least float32. Duplicates are possible when a problem has fewer than
            ``k`` distinct (positively weighted) values.
        assignments: ``(n, m)`` int64 codes in ``[0, k)``, each point's nearest centroid (ties go to
            the lower index).
        objective: ``(n,)`` float64, ``sum_j w_j (x_j - centroids[a_j])^2`` computed directly from the
            returned centroids and codes.
        n_iter: ``(n,)`` int64, Lloyd iterations run per problem.
        history: ``(n, T + 1)`` float64 objective after seeding and after each Lloyd iteration
            (``T = n_iter.max()``, problems that stopped earlier repeat their last value); only with
            ``return_history=True`` on the torch backend, else ``None``. Computed from the float64
            prefix sums, before centroids are cast to the output dtype.
    """

    centroids: Tensor
    assignments: Tensor
    objective: Tensor
    n_iter: Tensor
    history: Tensor | None = None


class FaissUnavailableError(ImportError):
    """The ``faiss`` backend was asked for but ``faiss`` cannot be imported."""


@dataclass(frozen=True)
class _Sorted:
    """Sorted, centred points of a chunk of problems and their float64 weighted prefix sums.

    ``xs`` is ``(b, m)``; ``p`` is ``(b, m + 1, 3)`` with ``p[:, j] = (P0[j], P1[j], P2[j])``, the sums
    over the first ``j`` sorted points of ``w``, ``w x`` and ``w x^2`` (kept side by side so that one
    gather fetches all three); ``shift`` is ``(b, 1)``, the mid-range subtracted from every point;
    ``lo``/``hi`` ``(b, 1)`` are each problem's exact min and max in original coordinates.
    """

    xs: Tensor
    p: Tensor
    shift: Tensor
    lo: Tensor
    hi: Tensor

    def rows(self, index: Tensor) -> _Sorted:
        """The problems ``index`` (a 1-D index tensor), copied."""
        return _Sorted(self.xs[index], self.p[index], self.shift[index], self.lo[index], self.hi[index])


# ---------------------------------------------------------------------------------------------
# validation


def _check_inputs(x: Tensor, k: int, weights: Tensor | None, iters: int, tol: float, init: object,
                  backend: str, chunk_size: int | None) -> Tensor | None:
    """Validate arguments and return ``weights`` broadcast to ``(n, m)`` on ``x``'s device (or None)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (n problems, m points), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[1] < 1:
        raise ValueError("x must have at least one point per problem (m >= 1)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer in 1..{MAX_K}, got {k!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative integer, got {iters!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite non-negative number, got {tol!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(init, str) and init not in INITS:
        raise ValueError(f"init must be one of {INITS} or a tensor of centroids, got {init!r}")
    if not isinstance(init, (str, Tensor)):
        raise TypeError(f"init must be a string or a tensor, got {type(init).__name__}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains non-finite values (nan or inf)")
    if weights is None:
        return None
    w = torch.as_tensor(weights, device=x.device)
    if not w.is_floating_point():
        w = w.to(torch.float64)
    if w.dim() == 1 and w.shape[0] == x.shape[1]:
        w = w.expand(x.shape[0], -1)
    elif tuple(w.shape) != tuple(x.shape):
        raise ValueError(f"weights must have shape (n, m) = {tuple(x.shape)} or (m,) = ({x.shape[1]},), "
                         f"got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weights contain non-finite values (nan or inf)")
    if bool((w < 0).any()):
        raise ValueError("weights must be non-negative")
    return w


def _initial_centroids(init: Tensor, n: int, k: int, device: torch.device) -> Tensor:
    """Validate user-given initial centroids (``(n, k)`` or ``(k,)``) and return them ``(n, k)`` float64."""
    c = init.to(device=device, dtype=torch.float64)
    if c.dim() == 1:
        c = c.expand(n, -1)
    if tuple(c.shape) != (n, k):
        raise ValueError(f"init centroids must have shape (n, k) = ({n}, {k}) or (k,), "
                         f"got {tuple(init.shape)}")
    if not bool(torch.isfinite(c).all()):
        raise ValueError("init centroids contain non-finite values")
    return c


# ---------------------------------------------------------------------------------------------
# segment arithmetic on sorted points


def _row_blocks(n: int, m: int, device: torch.device) -> list[slice]:
    """Row slices for element-wise passes over ``(n, m)`` tensors. On CPU, blocks of about 2^20
    elements keep temporaries small enough for the allocator to reuse (each fresh large buffer
    costs page faults); an accelerator's caching allocator needs no blocking."""
    step = n if device.type != "cpu" else max(1, (1 << 20) // max(m, 1))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _prefix_stats(x: Tensor, w: Tensor | None) -> _Sorted:
    """Sort each row of ``x`` (``(b, m)``), centre it on its mid-range, build float64 prefix sums."""
    b, m = x.shape
    xs = torch.empty(b, m, dtype=torch.float64, device=x.device)
    p = torch.empty(b, m + 1, 3, dtype=torch.float64, device=x.device)
    p[:, 0] = 0
    for rows in _row_blocks(b, m, x.device):
        vals, order = torch.sort(x[rows], dim=1)
        xs[rows] = vals
        blk = xs[rows]
        blk.sub_((blk[:, :1] + blk[:, -1:]) / 2)
        if w is None:
            p[rows, 1:, 0] = torch.arange(1, m + 1, dtype=torch.float64, device=x.device)
            p[rows, 1:, 1] = blk.cumsum(1)
            p[rows, 1:, 2] = (blk * blk).cumsum(1)
        else:
            wx = w[rows].gather(1, order).to(torch.float64)
            p[rows, 1:, 0] = wx.cumsum(1)
            wx.mul_(blk)
            p[rows, 1:, 1] = wx.cumsum(1)
            p[rows, 1:, 2] = wx.mul_(blk).cumsum(1)
    lo = x.amin(1, keepdim=True).to(torch.float64)
    hi = x.amax(1, keepdim=True).to(torch.float64)
    return _Sorted(xs, p, (lo + hi) / 2, lo, hi)


def _prefix_at(st: _Sorted, index: Tensor) -> Tensor:
    """Prefix sums ``(b, t, 3)`` at sorted positions ``index`` ``(b, t)`` (values in ``[0, m]``)."""
    return st.p.gather(1, index.unsqueeze(-1).expand(-1, -1, 3))


def _cost(sums: Tensor, c: Tensor) -> Tensor:
    """``sum w (x - c)^2 = S2 - 2 c S1 + c^2 S0`` of runs with sums ``(..., 3)`` around ``c``, >= 0."""
    return (sums[..., 2] - 2 * c * sums[..., 1] + c * c * sums[..., 0]).clamp_min(0)


def _segment_cost(st: _Sorted, lo: Tensor, hi: Tensor, c: Tensor) -> Tensor:
    """``sum_{j in [lo, hi)} w_j (x_j - c)^2`` over sorted points; all ``(b, t)``."""
    return _cost(_prefix_at(st, hi) - _prefix_at(st, lo), c)


def _run_sums(st: _Sorted, bnd: Tensor) -> Tensor:
    """Sums ``(b, t, 3)`` of ``w, w x, w x^2`` over runs ``[bnd_l, bnd_{l+1})``; ``bnd`` is ``(b, t + 1)``."""
    g = _prefix_at(st, bnd)
    return g[:, 1:] - g[:, :-1]


def _boundaries(st: _Sorted, c: Tensor) -> Tensor:
    """Run boundaries ``(b, t + 1)`` for sorted centroids ``c`` ``(b, t)``: cluster ``l`` holds the
    sorted points ``[B_l, B_{l+1})``; a point exactly on a midpoint goes to the upper cluster."""
    b, m = st.xs.shape
    mids = (c[:, 1:] + c[:, :-1]) / 2
    inner = torch.searchsorted(st.xs, mids.contiguous())
    first = inner.new_zeros(b, 1)
    return torch.cat([first, inner, first + m], 1)


# ---------------------------------------------------------------------------------------------
# seeding


def _sample_d2(st: _Sorted, c: Tensor, bnd: Tensor, seg: Tensor, target: Tensor) -> Tensor:
    """Inverse-CDF sample of points with probability proportional to ``w D^2``.

    ``seg`` ``(b, t)`` holds the cost of each centroid's run, ``target`` ``(b, L)`` uniform draws
    times the total cost. Returns the chosen points' values ``(b, L)``: the first sorted point at
    which the cumulative ``w D^2`` exceeds the target (a bisection inside the chosen run). When the
    total is 0 (every point already on a centroid) the last point of the last run is returned.
    """
    m = st.xs.shape[1]
    t = c.shape[1]
    cum = seg.cumsum(1)
    run = torch.searchsorted(cum, target.contiguous(), right=True).clamp_max(t - 1)
    rest = target - (cum.gather(1, run) - seg.gather(1, run))
    lo = bnd.gather(1, run)
    hi = torch.maximum(bnd.gather(1, run + 1) - 1, lo)
    s = c.gather(1, run)
    base = _prefix_at(st, lo)
    left, right = lo, hi
    for _ in range(max(1, math.ceil(math.log2(m + 1))) + 1):
        mid = (left + right) // 2
        above = _cost(_prefix_at(st, mid + 1) - base, s) > rest
        right = torch.where(above, mid, right)
        left = torch.where(above, left, torch.minimum(mid + 1, right))
    return st.xs.gather(1, left.clamp(0, m - 1))


def _trial(st: _Sorted, c: Tensor, bnd: Tensor, cand: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Try each candidate ``cand`` ``(b, L)`` as a new centroid next to sorted ``c`` ``(b, t)``.

    Only the points between the candidate's neighbours ``s_l < cand <= s_r`` move: those in
    ``[mid(s_l, cand), mid(cand, s_r))`` switch from ``s_l`` (below ``mid(s_l, s_r)``) or ``s_r`` to
    the candidate. One ``searchsorted`` and a few segment sums, O(log m) per candidate.

    Returns ``(delta, pos, lo, hi)``, all ``(b, L)``: the change of the objective, the insertion
    position in ``c`` and the candidate's run ``[lo, hi)`` of sorted points.
    """
    m = st.xs.shape[1]
    t = c.shape[1]
    n_cand = cand.shape[1]
    pos = torch.searchsorted(c, cand.contiguous())
    has_l, has_r = pos > 0, pos < t
    s_l = c.gather(1, (pos - 1).clamp_min(0))
    s_r = c.gather(1, pos.clamp_max(t - 1))
    i_mid = bnd.gather(1, pos)
    idx = torch.searchsorted(st.xs, torch.cat([(s_l + cand) / 2, (cand + s_r) / 2], 1))
    i_lo = torch.where(has_l, idx[:, :n_cand], 0)
    i_hi = torch.where(has_r, idx[:, n_cand:], m)
    p_lo, p_mid, p_hi = _prefix_at(st, i_lo), _prefix_at(st, i_mid), _prefix_at(st, i_hi)
    gain = _cost(p_mid - p_lo, s_l) + _cost(p_hi - p_mid, s_r)
    return _cost(p_hi - p_lo, cand) - gain, pos, i_lo, i_hi


def _insert(rows: Tensor, pos: Tensor, value: Tensor) -> Tensor:
    """Insert ``value`` ``(b, 1)`` before column ``pos`` ``(b, 1)`` of ``rows`` ``(b, t)``: ``(b, t + 1)``."""
    b, t = rows.shape
    j = torch.arange(t + 1, device=rows.device).expand(b, -1)
    src = (j - (j > pos).long()).clamp_max(max(t - 1, 0))
    return torch.where(j == pos, value, rows.gather(1, src))


def _first_centroid(st: _Sorted, u: Tensor) -> Tensor:
    """First seed ``(b, 1)``: a point drawn with probability proportional to its weight (the largest
    point if all weights are 0); ``u`` is ``(b, 1)`` uniform."""
    m = st.xs.shape[1]
    cum_w = st.p[:, 1:, 0].contiguous()
    idx = torch.searchsorted(cum_w, u * cum_w[:, -1:], right=True).clamp_max(m - 1)
    return st.xs.gather(1, idx)


def _init_kmeanspp(st: _Sorted, k: int, u: Tensor) -> Tensor:
    """Greedy k-means++ seeding, ``(b, k)`` sorted centroids (centred coordinates).

    The first seed is drawn proportional to ``w``; each further seed draws ``L`` candidates
    proportional to ``w D^2`` (``D`` the distance to the nearest seed so far) and keeps the one that
    lowers the objective most, as scikit-learn does (``L = u.shape[2]``, 2 + floor(ln k) by default).
    ``u`` is ``(b, k, L)`` uniform in [0, 1). The seeds' runs and run costs are updated in place of
    the chosen candidate (O(t) per step, no new search over the points).
    """
    c = _first_centroid(st, u[:, 0, :1])
    bnd = _boundaries(st, c)
    seg = _cost(_run_sums(st, bnd), c)
    offsets = torch.tensor([-1, 0, 1], device=c.device)
    for t in range(1, k):
        cand = _sample_d2(st, c, bnd, seg, u[:, t, :] * seg.sum(1, keepdim=True))
        delta, pos, lo, hi = _trial(st, c, bnd, cand)
        best = delta.argmin(1, keepdim=True)
        pos, lo, hi = pos.gather(1, best), lo.gather(1, best), hi.gather(1, best)
        c = _insert(c, pos, cand.gather(1, best))
        bnd = _insert(bnd, pos, lo).scatter(1, pos + 1, hi)
        touched = (pos + offsets).clamp(0, t)  # the runs of the new seed and of its neighbours
        cost = _segment_cost(st, bnd.gather(1, touched), bnd.gather(1, touched + 1), c.gather(1, touched))
        seg = _insert(seg, pos, seg.new_zeros(pos.shape)).scatter(1, touched, cost)
    return c


def _init_quantile(st: _Sorted, k: int) -> Tensor:
    """Deterministic seeding ``(b, k)``: the points at weighted quantiles ``(l + 1/2) / k``
    (unweighted ranks for a problem whose weights are all 0)."""
    b, m = st.xs.shape
    q = (torch.arange(k, device=st.xs.device, dtype=torch.float64) + 0.5) / k
    cum_w = st.p[:, 1:, 0].contiguous()
    total = cum_w[:, -1:]
    idx = torch.searchsorted(cum_w, (q * total).contiguous()).clamp_max(m - 1)
    rank = (q * m).long().clamp_max(m - 1).expand(b, -1)
    idx = torch.where(total > 0, idx, rank)
    return st.xs.gather(1, idx)


# ---------------------------------------------------------------------------------------------
# Lloyd


def _lloyd(st: _Sorted, c: Tensor, iters: int, tol: float,
           record: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Weighted Lloyd iterations on sorted centroids ``c`` ``(b, k)`` (centred coordinates).

    Each iteration moves every centroid to the weighted mean of its run, ``S1 / S0``, and recomputes
    the runs. A problem stops when its runs no longer change (an exact fixed point: the next update
    would reproduce the same centroids) or when its objective improves by at most ``tol`` times its
    previous value. An empty cluster (no points, or only zero-weight points) keeps its previous
    centroid, which lies between its neighbours' runs, so the centroids stay sorted (a running
    maximum guards against rounding). Stopped problems are dropped from the working set whenever at
    least half of it has stopped, so late iterations only touch the slow problems (on an
    accelerator this is checked every 8 iterations, as each check waits for the device).

    Returns the centroids ``(b, k)``, the per-problem iteration counts ``(b,)`` and, if ``record``,
    the objective of all ``b`` problems after seeding and after each iteration (a list of ``(b,)``).
    """
    b = c.shape[0]
    out = c.clone()
    n_iter = torch.zeros(b, dtype=torch.int64, device=c.device)
    rows = torch.arange(b, device=c.device)
    bnd = _boundaries(st, c)
    sums = _run_sums(st, bnd)
    obj = _cost(sums, c).sum(1)
    last = obj.clone()
    history = [last.clone()] if record else []
    active = torch.ones(b, dtype=torch.bool, device=c.device)
    check_every = 1 if c.device.type == "cpu" else 8  # each check synchronises an accelerator
    for it in range(iters):
        w0 = sums[..., 0]
        mean = sums[..., 1] / torch.where(w0 > 0, w0, torch.ones_like(w0))
        new_c = torch.where(w0 > 0, mean, c).cummax(1).values
        new_bnd = _boundaries(st, new_c)
        new_sums = _run_sums(st, new_bnd)
        new_obj = _cost(new_sums, new_c).sum(1)
        keep = ~active
        moved = (new_bnd != bnd).any(1)
        improved = (obj - new_obj) > tol * obj
        n_iter[rows] += active.long()
        c = torch.where(keep[:, None], c, new_c)
        bnd = torch.where(keep[:, None], bnd, new_bnd)
        sums = torch.where(keep[:, None, None], sums, new_sums)
        obj = torch.where(keep, obj, new_obj)
        active = active & moved & improved
        if record:
            last[rows] = obj
            history.append(last.clone())
        if (it + 1) % check_every:
            continue
        n_active = int(active.sum())
        if n_active == 0:
            break
        if n_active <= rows.shape[0] // 2:
            out[rows] = c
            idx = active.nonzero().squeeze(1)
            rows, c, bnd, sums, obj, active = rows[idx], c[idx], bnd[idx], sums[idx], obj[idx], active[idx]
            st = st.rows(idx)
    out[rows] = c
    if record:  # drop the unchecked iterations after the last problem stopped
        history = history[: int(n_iter.max()) + 1]
    return out, n_iter, history


# ---------------------------------------------------------------------------------------------
# public helpers


def nearest_centroid_1d(x: Tensor, centroids: Tensor) -> Tensor:
    """Codes ``(n, m)`` int64 of each point's nearest centroid, ties to the lower index.

    Args:
        x: ``(n, m)`` points.
        centroids: ``(n, k)`` centroids, sorted ascending along ``k`` (duplicates allowed).

    A ``searchsorted`` of the points into the centroid midpoints (O(m log k)), then a comparison with
    both neighbouring centroids so that the result is exact in the common dtype of ``x`` and
    ``centroids`` (a rounded midpoint can only be off by one): for every point
    ``|x - centroids[code]| <= |x - centroids[l]|`` for all ``l``, and ``code`` is the first such
    ``l`` (what ``argmin`` over all centroids would return), also among duplicated centroids.
    """
    dtype = torch.promote_types(x.dtype, centroids.dtype)
    x, c = x.to(dtype), centroids.to(dtype)
    n, k = c.shape
    if k == 1:
        return torch.zeros(x.shape, dtype=torch.int64, device=x.device)
    mids = ((c[:, 1:] + c[:, :-1]) / 2).contiguous()
    code = torch.searchsorted(mids, x.contiguous())
    inf = c.new_full((n, 1), math.inf)
    padded = torch.cat([-inf, c, inf], 1)
    # (n, k, 3): centroid l's lower neighbour, itself, upper neighbour (+-inf past the ends)
    table = torch.stack([padded[:, :-2], padded[:, 1:-1], padded[:, 2:]], 2)
    near = table.gather(1, code.unsqueeze(-1).expand(-1, -1, 3))
    dist = near.sub_(x.unsqueeze(-1)).abs_()
    d_down, d_here, d_up = dist.unbind(-1)
    down = d_down <= d_here
    up = d_up < torch.minimum(d_down, d_here)
    code = code + up.long() - (down & ~up).long()
    # duplicated centroids: report the first of equal values
    first = torch.searchsorted(c.contiguous(), c.contiguous())
    return first.gather(1, code)


def weighted_sse(x: Tensor, centroids: Tensor, codes: Tensor, weights: Tensor | None = None) -> Tensor:
    """``(n,)`` float64 objective ``sum_j w_j (x_j - centroids[codes_j])^2`` per problem."""
    err = x.to(torch.float64) - centroids.to(torch.float64).gather(1, codes)
    sq = err * err
    if weights is not None:
        sq = sq * weights.to(torch.float64)
    return sq.sum(1)


# ---------------------------------------------------------------------------------------------
# backends


def _output_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _finish(x: Tensor, w: Tensor | None, c: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Clamp centroids ``(b, k)`` (original coordinates, float64) to each problem's range
    ``[lo, hi]`` (``(b, 1)``), cast and sort them, assign every point and compute the objective."""
    dtype = _output_dtype(x)
    c = torch.sort(torch.minimum(torch.maximum(c, lo), hi).to(dtype), 1).values
    codes = torch.empty(x.shape, dtype=torch.int64, device=x.device)
    obj = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for rows in _row_blocks(x.shape[0], x.shape[1], x.device):
        codes[rows] = nearest_centroid_1d(x[rows], c[rows])
        obj[rows] = weighted_sse(x[rows], c[rows], codes[rows], None if w is None else w[rows])
    return c, codes, obj


def _fit_torch_chunk(x: Tensor, w: Tensor | None, k: int, iters: int, tol: float, init: str | Tensor,
                     u: Tensor | None, record: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
    st = _prefix_stats(x, w)
    if isinstance(init, Tensor):
        c = torch.sort(init - st.shift, 1).values
    elif init == "quantile":
        c = _init_quantile(st, k)
    else:
        assert u is not None
        c = _init_kmeanspp(st, k, u)
    c, n_iter, history = _lloyd(st, c, iters, tol, record)
    cent, codes, obj = _finish(x, w, c + st.shift, st.lo, st.hi)
    return cent, codes, obj, n_iter, history


def _stack_history(parts: list[list[Tensor]]) -> Tensor:
    """Concatenate per-chunk histories (lists of ``(b,)``) into ``(n, T + 1)``, padding with the last
    value of each chunk."""
    length = max(len(h) for h in parts)
    cols = [torch.stack(h + [h[-1]] * (length - len(h)), 1) for h in parts]
    return torch.cat(cols, 0)


def _fit_torch(x: Tensor, w: Tensor | None, k: int, iters: int, tol: float, init: str | Tensor, seed: int,
               n_local_trials: int, chunk_size: int, return_history: bool) -> KMeans1D:
    n, m = x.shape
    gen = torch.Generator().manual_seed(seed)
    results: list[tuple[Tensor, Tensor, Tensor, Tensor, list[Tensor]]] = []
    for start in range(0, n, chunk_size):
        stop = min(n, start + chunk_size)
        xc = x[start:stop]
        wc = None if w is None else w[start:stop]
        u = None
        if isinstance(init, str) and init == "kmeans++":
            u = torch.rand((stop - start, k, n_local_trials), generator=gen, dtype=torch.float64)
            u = u.to(x.device)
        ic = init[start:stop] if isinstance(init, Tensor) else init
        results.append(_fit_torch_chunk(xc, wc, k, iters, tol, ic, u, return_history))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("kmeans_1d: problems %d..%d of %d, k=%d, m=%d, up to %d Lloyd iterations",
                         start, stop, n, k, m, int(results[-1][3].max()))
    history = _stack_history([r[4] for r in results]) if return_history else None
    return KMeans1D(torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results]),
                    torch.cat([r[2] for r in results]), torch.cat([r[3] for r in results]), history)


def _import_faiss() -> ModuleType:
    """The ``faiss`` module, imported only when the faiss backend is asked for."""
    try:
        import faiss
    except ImportError as err:
        raise FaissUnavailableError(
            "kmeans_1d(backend='faiss') needs faiss: pip install 'lowbit-cluster[faiss]' (faiss-cpu), "
            "or use backend='torch'") from err
    return faiss


def _faiss_accepts_weights(faiss_module: Any) -> bool:
    """Whether ``faiss.Kmeans.train`` takes per-point ``weights`` (faiss >= 1.7)."""
    try:
        params = inspect.signature(faiss_module.Kmeans.train).parameters
    except (TypeError, ValueError, AttributeError):
        return False
    return "weights" in params


def _check_faiss(weighted: bool, k: int, m: int) -> Any:
    """Import faiss and check that it can run this problem; returns the module."""
    faiss = _import_faiss()
    if m < k:
        raise ValueError(f"backend='faiss' needs at least k={k} points per problem, got m={m}")
    if weighted and not _faiss_accepts_weights(faiss):
        raise FaissUnavailableError(
            f"the installed faiss {getattr(faiss, '__version__', '?')} cannot take sample weights "
            "(faiss.Kmeans.train has no 'weights' argument); use backend='torch' for weighted input")
    return faiss


def _fit_faiss(faiss: Any, x: Tensor, w: Tensor | None, seeds: Tensor, iters: int, seed: int) -> KMeans1D:
    """Lloyd iterations by one ``faiss.Kmeans`` per problem (a Python loop; CPU, float32).

    ``seeds`` ``(n, k)`` are the initial centroids (lowbit's seeding, so ``init`` means the same on
    both backends). faiss runs exactly ``iters`` iterations (no early stop), re-seeds an empty
    cluster by splitting a large one, and needs ``m >= k``. Centroids, codes and objective are then
    finished as in the torch backend; ``n_iter`` reports ``iters``.
    """
    n, m = x.shape
    k = seeds.shape[1]
    params: dict[str, object] = {"niter": iters, "seed": seed, "verbose": False,
                                 "max_points_per_centroid": m, "min_points_per_centroid": 1}
    xn = x.detach().to("cpu", torch.float32).numpy()
    wn = None if w is None else w.detach().to("cpu", torch.float32).contiguous().numpy()
    cn = seeds.detach().to("cpu", torch.float32).numpy()
    cent = torch.empty(n, k, dtype=torch.float64)
    for i in range(n):
        km = faiss.Kmeans(1, k, **params)
        km.train(xn[i, :, None], weights=None if wn is None else wn[i], init_centroids=cn[i, :, None].copy())
        cent[i] = torch.from_numpy(km.centroids[:, 0].astype("float64"))
    x64 = x.to(torch.float64)
    c, codes, obj = _finish(x, w, cent.to(x.device), x64.amin(1, keepdim=True), x64.amax(1, keepdim=True))
    n_iter = torch.full((n,), iters, dtype=torch.int64, device=x.device)
    return KMeans1D(c, codes, obj, n_iter, None)


def _fit_numpy(x: Tensor, w: Tensor | None, k: int, iters: int, init: str | Tensor, seed: int,
               trials: int) -> KMeans1D:
    """The host backend: centroids from :func:`lowbit.cluster.kmeans1d_host.fit_host`, finished
    (codes, objective) as in the torch backend."""
    from .kmeans1d_host import fit_host

    if isinstance(init, str) and init != "kmeans++":
        raise ValueError(f"backend='numpy' seeds by k-means++ or from given centroids, not {init!r}")
    xn = x.detach().to("cpu", torch.float64).numpy()
    wn = None if w is None else w.detach().to("cpu", torch.float64).numpy()
    cn = init.detach().to("cpu", torch.float64).numpy() if isinstance(init, Tensor) else None
    cent, n_iter = fit_host(xn, wn, k, iters, seed, trials, cn)
    x64 = x.to(torch.float64)
    c, codes, obj = _finish(x, w, torch.from_numpy(cent).to(x.device), x64.amin(1, keepdim=True),
                            x64.amax(1, keepdim=True))
    return KMeans1D(c, codes, obj, torch.from_numpy(n_iter).to(x.device), None)


def _empty_result(x: Tensor, k: int, return_history: bool) -> KMeans1D:
    """The result for ``n = 0`` problems."""
    m = x.shape[1]
    hist = x.new_zeros((0, 1), dtype=torch.float64) if return_history else None
    return KMeans1D(x.new_zeros((0, k), dtype=_output_dtype(x)), x.new_zeros((0, m), dtype=torch.int64),
                    x.new_zeros(0, dtype=torch.float64), x.new_zeros(0, dtype=torch.int64), hist)


# ---------------------------------------------------------------------------------------------
# entry point


def kmeans_1d(x: Tensor, k: int, weights: Tensor | None = None, *, iters: int = 300, seed: int = 0,
              init: str | Tensor = "kmeans++", backend: str = "torch", tol: float = 0.0,
              n_local_trials: int | None = None, chunk_size: int | None = None,
              return_history: bool = False) -> KMeans1D:
    """Weighted 1-D k-means for ``n`` independent problems at once (CLAQ, arXiv 2405.17233).

    Row ``i`` of ``x`` is one problem; it gets ``k`` centroids ``c_i`` and codes ``a_i`` minimising

        J_i = sum_j w_ij (x_ij - c_{i, a_ij})^2

    by k-means++ seeding and weighted Lloyd iterations (see the module docstring for how sorting and
    prefix sums make each iteration O(k log m)). For CLAQ's per-column tables pass the weight matrix
    transposed, ``kmeans_1d(W.T, 2**bits)``; SqueezeLLM-style sensitivity weights go in ``weights``.

    Args:
        x: ``(n, m)`` floating-point points, finite; on CPU or CUDA (the work runs there).
        k: number of centroids, 1..256. ``k`` may exceed the number of distinct values: the extra
            centroids are duplicates (seeding has nothing left to sample, so it repeats the largest
            point of the last run) and their clusters stay empty; an empty cluster keeps its previous
            centroid (it is not re-seeded). The objective is then 0 up to float64 rounding.
        weights: non-negative finite ``(n, m)``, or ``(m,)`` shared by all problems; ``None`` means 1.
            Zero-weight points are assigned but never move a centroid. A problem whose weights are
            all 0 keeps its seeds.
        iters: maximum Lloyd iterations (0: return the seeding).
        seed: seeds a CPU ``torch.Generator`` that draws all k-means++ uniforms; the result is
            deterministic for a seed and independent of the device and of ``chunk_size`` up to
            floating-point rounding (problem ``i`` always consumes the ``i``-th block of draws).
        init: ``"kmeans++"`` (greedy, as scikit-learn), ``"quantile"`` (the points at weighted
            quantiles ``(l + 1/2)/k``; deterministic, no sampling, but on heavy-tailed data Lloyd
            then stops in much worse local optima), or a ``(n, k)`` / ``(k,)`` tensor of initial
            centroids. The seeding is always done by lowbit, whatever the backend.
        backend: ``"torch"`` (batched, any device), ``"numpy"`` (one problem at a time on the host,
            :mod:`lowbit.cluster.kmeans1d_host`: the fast choice for a few problems, such as one
            column inside GPTQ; its own random stream; ``init="quantile"`` is not offered; ignores
            ``tol`` and ``return_history``) or ``"faiss"`` (Lloyd iterations by one
            ``faiss.Kmeans`` per problem on CPU in float32, from the same seeds; needs ``faiss``
            and ``m >= k``, raises :class:`FaissUnavailableError`, an ``ImportError``, when faiss is
            missing or cannot take weights; runs exactly ``iters`` iterations, ignores ``tol`` and
            ``return_history``, and re-seeds empty clusters by splitting large ones).
        tol: a problem stops when an iteration lowers its objective by at most ``tol`` times the
            previous value; with the default 0 it runs until its clusters stop changing (an exact
            fixed point) or ``iters``.
        n_local_trials: candidates per greedy k-means++ step (default ``2 + floor(ln k)``).
        chunk_size: problems per batch (default ``2**24 // m``). Peak extra memory is about 50 to
            100 bytes per point of a chunk (0.8 GB measured for a 4096 x 4096 layer on CPU); lower
            it to bound memory, raise it for more parallelism on a large accelerator.
        return_history: also return the per-iteration objective (torch backend).

    Returns:
        :class:`KMeans1D` with ``centroids (n, k)`` sorted ascending, ``assignments (n, m)`` int64,
        ``objective (n,)`` float64, ``n_iter (n,)`` and optionally ``history``.

    Raises:
        ValueError: ``x`` not 2-D or empty along ``m``, non-finite ``x`` or weights, negative
            weights, a weights shape other than ``(n, m)`` or ``(m,)``, ``k`` outside 1..256, bad
            ``iters``/``tol``/``init``/``backend``/``chunk_size``.
        TypeError: ``x`` not a floating-point tensor.
        FaissUnavailableError: ``backend="faiss"`` without a usable faiss.
    """
    w = _check_inputs(x, k, weights, iters, tol, init, backend, chunk_size)
    n, m = x.shape
    if isinstance(init, Tensor):
        init = _initial_centroids(init, n, k, x.device)
    trials = n_local_trials if n_local_trials is not None else 2 + int(math.log(k))
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"n_local_trials must be a positive integer, got {n_local_trials!r}")
    faiss = _check_faiss(w is not None, k, m) if backend == "faiss" else None
    if n == 0:
        return _empty_result(x, k, return_history)
    chunk = chunk_size if chunk_size is not None else max(1, DEFAULT_CHUNK_ELEMENTS // m)
    with torch.no_grad():
        x = x.detach()
        if backend == "numpy":
            return _fit_numpy(x, w, k, iters, init, seed, trials)
        if backend == "faiss":
            if iters == 0:
                return _fit_torch(x, w, k, 0, tol, init, seed, trials, chunk, False)
            seeds = init if isinstance(init, Tensor) else \
                _fit_torch(x, w, k, 0, tol, init, seed, trials, chunk, False).centroids
            return _fit_faiss(faiss, x, w, seeds, iters, seed)
        return _fit_torch(x, w, k, iters, tol, init, seed, trials, chunk, return_history)

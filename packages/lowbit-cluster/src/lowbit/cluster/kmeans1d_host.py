"""The ``"numpy"`` backend of :func:`lowbit.cluster.kmeans_1d`: one problem at a time, on the host.

The batched torch backend amortises its many small tensor operations over thousands of problems.
Inside GPTQ (CLAQ, arXiv 2405.17233) the problems come one column at a time, after each column's
error feedback, and then those operations dominate: 5 to 35 ms per column on a CPU or an H100.
Here the same algorithm runs in numpy on one sorted column, where an operation costs a
microsecond or two:

- greedy k-means++ seeding (as scikit-learn): the first centroid drawn with probability ``w_j``,
  each next one the best of ``n_local_trials`` candidates drawn with probability ``w_j D_j^2``
  (D the distance to the nearest centroid so far), best meaning the lowest potential
  ``sum_j w_j min(D_j, |x_j - cand|)^2``;
- Lloyd iterations on the sorted points with prefix sums ``P0 = cumsum(w)``, ``P1 = cumsum(w x)``:
  cluster l is the run of points between the midpoints around ``c_l`` (ties to the lower
  centroid), its new centroid ``(P1[hi] - P1[lo]) / (P0[hi] - P0[lo])``; an empty cluster keeps
  its centroid; stop when the runs stop changing or after ``iters``.

Draws come from ``numpy.random.default_rng(seed + i)`` for problem i, so results are deterministic
but differ from the torch backend's stream.
"""

from __future__ import annotations

import numpy as np


def seed_kmeanspp(xs: np.ndarray, ws: np.ndarray, k: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds ``(k,)`` (unsorted) for sorted points ``xs`` with weights ``ws``."""
    m = xs.shape[0]
    c = np.empty(k)
    cum = np.cumsum(ws)
    if cum[-1] <= 0:  # all weights zero: seed as if unweighted
        ws = np.ones_like(ws)
        cum = np.cumsum(ws)
    c[0] = xs[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), m - 1)]
    d2 = ws * (xs - c[0]) ** 2
    for j in range(1, k):
        cd = np.cumsum(d2)
        if cd[-1] <= 0:  # every point sits on a centroid: the rest are duplicates
            c[j:] = xs[-1]
            break
        idx = np.minimum(np.searchsorted(cd, rng.random(trials) * cd[-1], side="right"), m - 1)
        cand = xs[idx]
        nd2 = np.minimum(d2[None, :], ws[None, :] * (xs[None, :] - cand[:, None]) ** 2)
        best = int(np.argmin(nd2.sum(1)))
        c[j] = cand[best]
        d2 = nd2[best]
    return c


def lloyd_sorted(xs: np.ndarray, ws: np.ndarray, c: np.ndarray, iters: int) -> tuple[np.ndarray, int]:
    """Lloyd iterations from centroids ``c`` on sorted points; returns (sorted centroids, iterations)."""
    m = xs.shape[0]
    p0 = np.concatenate([[0.0], np.cumsum(ws)])
    p1 = np.concatenate([[0.0], np.cumsum(ws * xs)])
    c = np.sort(c)
    prev = None
    it = 0
    for it in range(1, iters + 1):
        bounds = np.searchsorted(xs, (c[1:] + c[:-1]) / 2, side="right")
        if prev is not None and np.array_equal(bounds, prev):
            return c, it - 1
        lo = np.concatenate([[0], bounds])
        hi = np.concatenate([bounds, [m]])
        w0 = p0[hi] - p0[lo]
        c = np.sort(np.where(w0 > 0, (p1[hi] - p1[lo]) / np.where(w0 > 0, w0, 1.0), c))
        prev = bounds
    return c, it


def fit_host(x: np.ndarray, w: np.ndarray | None, k: int, iters: int, seed: int, trials: int,
             init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centroids ``(n, k)`` float64 (sorted) and iterations ``(n,)`` for problems ``x`` ``(n, m)``.

    Points are centred on each problem's mid-range before the prefix sums, to limit cancellation.
    """
    n, _ = x.shape
    out = np.empty((n, k))
    n_iter = np.zeros(n, dtype=np.int64)
    for i in range(n):
        order = np.argsort(x[i], kind="stable")
        shift = 0.5 * (x[i, order[0]] + x[i, order[-1]])
        xs = x[i, order].astype(np.float64) - shift
        ws = np.ones_like(xs) if w is None else w[i, order].astype(np.float64)
        c0 = init[i] - shift if init is not None else \
            seed_kmeanspp(xs, ws, k, trials, np.random.default_rng(seed + i))
        c, n_iter[i] = lloyd_sorted(xs, ws, c0, iters)
        out[i] = c + shift
    return out, n_iter

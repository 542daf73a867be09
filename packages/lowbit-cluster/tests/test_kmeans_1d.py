"""Batched weighted 1-D k-means (CLAQ's per-column tables, arXiv 2405.17233).

Quality against scikit-learn's per-problem ``KMeans`` (the reference CLAQ uses), invariants under
hypothesis (range, nearest assignment, monotone Lloyd, determinism, weights as repetitions) and
input errors. The backend comes from ``LOWBIT_KMEANS_BACKEND`` (see ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from lowbit.cluster import FaissUnavailableError, KMeans1D, kmeans_1d, nearest_centroid_1d, weighted_sse
from lowbit.core.testing import heavy_tailed, weights

PROPS = settings(max_examples=100, deadline=None)
Problem = tuple[Tensor, int, "Tensor | None"]
PACKAGE = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# helpers and strategies


def _check_result(x: Tensor, k: int, w: Tensor | None, r: KMeans1D) -> None:
    """The contract every result meets, whatever the backend."""
    n, m = x.shape
    assert r.centroids.shape == (n, k) and r.centroids.dtype == torch.float32
    assert r.assignments.shape == (n, m) and r.assignments.dtype == torch.int64
    assert r.objective.shape == (n,) and r.objective.dtype == torch.float64
    assert r.n_iter.shape == (n,)
    c = r.centroids
    assert bool((c[:, 1:] >= c[:, :-1]).all()), "centroids are not sorted"
    assert bool((c >= x.amin(1, keepdim=True)).all() and (c <= x.amax(1, keepdim=True)).all())
    a = r.assignments
    assert bool((a >= 0).all() and (a < k).all())
    dist = (x[:, :, None] - c[:, None, :]).abs()
    assert torch.equal(a, dist.argmin(2)), "an assignment is not the (first) nearest centroid"
    torch.testing.assert_close(r.objective, weighted_sse(x, c, a, w), rtol=1e-12, atol=0)


def _distinct_positive(x: Tensor, w: Tensor | None) -> list[int]:
    """Per problem, the number of distinct values that carry positive weight."""
    wf = torch.ones_like(x) if w is None else w.expand_as(x)
    return [int(torch.unique(row[wr > 0]).numel()) for row, wr in zip(x, wf, strict=True)]


@st.composite
def problems(draw: st.DrawFn, max_k: int = 40) -> Problem:
    """``(x, k, weights)``: the columns of a heavy-tailed matrix as problems (``m <= 64`` points),
    sometimes rounded to a coarse grid (ties, fewer distinct values than ``k``), with no weights,
    shared ``(m,)`` weights or full ``(n, m)`` weights, a fifth of them zero."""
    x = draw(weights()).T.contiguous()
    if draw(st.booleans()):
        x = torch.round(x * 50) / 50
    k = draw(st.integers(1, max_k))
    kind = draw(st.sampled_from(["none", "shared", "full"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    shape = (x.shape[1],) if kind == "shared" else tuple(x.shape)
    if kind == "none":
        return x, k, None
    return x, k, torch.rand(shape, generator=g) ** 2 * (torch.rand(shape, generator=g) > 0.2)


def _fit_k(backend: str, k: int, m: int) -> int:
    """faiss needs at least k points per problem."""
    return min(k, m) if backend == "faiss" else k


# ---------------------------------------------------------------------------------------------
# quality against scikit-learn


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("k", [4, 8, 16])
def test_objective_matches_sklearn(backend: str, k: int, weighted: bool) -> None:
    """Median over 64 heavy-tailed columns of objective / sklearn's inertia is at most 1.01."""
    cluster = pytest.importorskip("sklearn.cluster")
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)  # sklearn's OpenMP threads only slow down 1k-point fits
    except ImportError:
        limit = contextlib.nullcontext()
    x = heavy_tailed((1024, 64), seed=k).T.contiguous()
    g = torch.Generator().manual_seed(k)
    w = torch.rand(x.shape, generator=g) ** 2 if weighted else None
    ours = kmeans_1d(x, k, w, backend=backend).objective
    ref = []
    with limit:
        for i in range(x.shape[0]):
            km = cluster.KMeans(n_clusters=k, random_state=0)
            km.fit(x[i].double().numpy()[:, None], sample_weight=None if w is None else w[i].double().numpy())
            ref.append(km.inertia_)
    ratio = ours / torch.tensor(ref, dtype=torch.float64)
    assert float(ratio.median()) <= 1.01, f"median objective ratio {float(ratio.median()):.4f}"


# ---------------------------------------------------------------------------------------------
# invariants


@PROPS
@given(problems())
def test_result_contract(backend: str, problem: Problem) -> None:
    """Sorted centroids inside [min, max], nearest assignments, objective = weighted SSE; zero
    objective whenever k reaches the number of distinct positively weighted values."""
    x, k, w = problem
    k = _fit_k(backend, k, x.shape[1])
    r = kmeans_1d(x, k, w, backend=backend)
    _check_result(x, k, w, r)
    scale = float((x.double() ** 2).sum()) + 1e-30
    rel = 1e-12 if backend == "torch" else 1e-5  # faiss perturbs the centroids it splits
    for i, distinct in enumerate(_distinct_positive(x, w)):
        if distinct <= k:
            assert float(r.objective[i]) <= rel * scale


@PROPS
@given(problems())
def test_lloyd_never_increases_the_objective(backend: str, problem: Problem) -> None:
    """The recorded per-iteration objective is non-increasing and ends at the returned one, up to
    the float64 rounding of the prefix sums it is computed from (relative to sum w x^2)."""
    if backend != "torch":
        pytest.skip("history is recorded by the torch backend only")
    x, k, w = problem
    r = kmeans_1d(x, k, w, return_history=True)
    h = r.history
    assert h is not None and h.shape == (x.shape[0], int(r.n_iter.max()) + 1)
    wf = torch.ones_like(x) if w is None else w.expand_as(x)
    slack = 1e-12 * (wf.double() * x.double() ** 2).sum(1, keepdim=True) + 1e-30
    assert bool((h[:, 1:] <= h[:, :-1] + slack).all())
    assert bool((r.objective[:, None] <= h[:, -1:] * (1 + 1e-5) + slack).all())


def test_more_iterations_never_hurt(backend: str) -> None:
    """With the same seed, the objective after ``iters = t`` is non-increasing in ``t``."""
    x = heavy_tailed((256, 24), seed=3).T.contiguous()
    objs = torch.stack([kmeans_1d(x, 8, iters=t, backend=backend).objective for t in range(6)])
    if backend == "torch":
        assert bool((objs[1:] <= objs[:-1] * (1 + 1e-6)).all())
    else:  # faiss splits empty clusters, which may cost a little
        assert bool((objs[-1] <= objs[0] * (1 + 1e-3)).all())


def test_deterministic_for_a_seed(backend: str) -> None:
    x = heavy_tailed((200, 32), seed=7).T.contiguous()
    a = kmeans_1d(x, 8, seed=11, backend=backend)
    b = kmeans_1d(x, 8, seed=11, backend=backend)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)
    assert torch.equal(a.objective, b.objective)


def test_chunking_does_not_change_the_result() -> None:
    """Problem i always consumes the i-th block of random draws, so chunks are invisible."""
    x = heavy_tailed((200, 37), seed=8).T.contiguous()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    whole = kmeans_1d(x, 6, w, seed=5)
    parts = kmeans_1d(x, 6, w, seed=5, chunk_size=4)
    head = kmeans_1d(x[:10], 6, w[:10], seed=5)
    torch.testing.assert_close(parts.centroids, whole.centroids, rtol=0, atol=0)
    torch.testing.assert_close(head.centroids, whole.centroids[:10], rtol=0, atol=0)
    assert torch.equal(parts.assignments, whole.assignments)


def test_row_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU, sorting/prefix sums and the final assignment run in blocks of rows."""
    import lowbit.cluster.kmeans1d as km

    x = heavy_tailed((120, 23), seed=12).T.contiguous()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    whole = kmeans_1d(x, 5, w)
    monkeypatch.setattr(km, "_row_blocks", lambda n, m, dev: [slice(i, i + 4) for i in range(0, n, 4)])
    blocked = kmeans_1d(x, 5, w)
    assert torch.equal(blocked.centroids, whole.centroids)
    assert torch.equal(blocked.assignments, whole.assignments)
    assert torch.equal(blocked.objective, whole.objective)


@PROPS
@given(weights(), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_integer_weights_equal_repeated_points(backend: str, W: Tensor, k: int, seed: int) -> None:
    """Weight w_j in {0, 1, 2, 3} behaves as w_j copies of point j (0: the point is absent)."""
    if backend == "faiss":
        pytest.skip("faiss re-seeds empty clusters from the points it holds, which differ here")
    x = W.T.contiguous()
    g = torch.Generator().manual_seed(seed)
    reps = torch.randint(0, 4, (x.shape[1],), generator=g)
    reps[int(torch.randint(0, x.shape[1], (1,), generator=g))] = 1 + int(reps.max() == 0)
    xr = x.repeat_interleave(reps, dim=1)
    k = _fit_k(backend, k, min(x.shape[1], xr.shape[1]))
    lo, hi = xr.amin(1, keepdim=True), xr.amax(1, keepdim=True)  # the range of the present points
    init = lo + (hi - lo) * (torch.arange(k) + 0.5) / k
    weighted = kmeans_1d(x, k, reps.float(), init=init, backend=backend)
    repeated = kmeans_1d(xr, k, init=init, backend=backend)
    torch.testing.assert_close(weighted.centroids, repeated.centroids, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(weighted.objective, repeated.objective, rtol=1e-4, atol=1e-12)


def test_integer_weights_equal_repeated_points_with_kmeanspp() -> None:
    """The k-means++ draws are inverse-CDF samples of the same distribution, so weights and
    repetitions get the same seeds too (up to rounding of the prefix sums)."""
    x = heavy_tailed((300, 16), seed=2).T.contiguous()
    reps = torch.randint(1, 4, (x.shape[1],), generator=torch.Generator().manual_seed(1))
    weighted = kmeans_1d(x, 8, reps.float(), seed=3)
    repeated = kmeans_1d(x.repeat_interleave(reps, dim=1), 8, seed=3)
    torch.testing.assert_close(weighted.centroids, repeated.centroids, rtol=1e-5, atol=1e-7)


def test_k1_is_the_weighted_mean_and_k_beyond_m_is_exact(backend: str) -> None:
    x = heavy_tailed((40, 5), seed=4).T.contiguous()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) + 0.1
    r = kmeans_1d(x, 1, w, backend=backend)
    mean = (w.double() * x.double()).sum(1) / w.double().sum(1)
    torch.testing.assert_close(r.centroids[:, 0].double(), mean, rtol=1e-6, atol=1e-9)
    if backend == "torch":  # faiss needs m >= k
        big = kmeans_1d(x, 64, w)
        _check_result(x, 64, w, big)
        assert float(big.objective.max()) == 0.0


def test_zero_weight_problem_and_constant_problem() -> None:
    x = heavy_tailed((30, 3), seed=5).T.contiguous()
    x[1] = 0.25
    w = torch.ones_like(x)
    w[0] = 0
    r = kmeans_1d(x, 4, w)
    _check_result(x, 4, w, r)
    assert float(r.objective[0]) == 0.0 and float(r.objective[1]) == 0.0
    assert bool((r.centroids[1] == 0.25).all())


def test_no_problems() -> None:
    r = kmeans_1d(torch.zeros(0, 9), 4, return_history=True)
    assert r.centroids.shape == (0, 4) and r.assignments.shape == (0, 9) and r.objective.shape == (0,)


@PROPS
@given(weights(), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_nearest_centroid_is_argmin(W: Tensor, k: int, seed: int) -> None:
    """Exact nearest, first index on ties, also with duplicated centroids."""
    x = W.T.contiguous()
    g = torch.Generator().manual_seed(seed)
    c = heavy_tailed((x.shape[0], k), seed=seed)
    c = torch.where(torch.rand(c.shape, generator=g) < 0.3, torch.round(c * 20) / 20, c).sort(1).values
    codes = nearest_centroid_1d(x, c)
    assert torch.equal(codes, (x[:, :, None] - c[:, None, :]).abs().argmin(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    x = heavy_tailed((1024, 128), seed=9).T.contiguous()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    cpu = kmeans_1d(x, 16, w)
    gpu = kmeans_1d(x.cuda(), 16, w.cuda())
    assert gpu.centroids.device.type == "cuda" and gpu.assignments.device.type == "cuda"
    _check_result(x.cuda(), 16, w.cuda(), gpu)
    same = torch.isclose(gpu.centroids.cpu(), cpu.centroids, rtol=1e-5, atol=1e-7).all(1)
    assert float(same.float().mean()) >= 0.9
    ratio = gpu.objective.cpu() / cpu.objective
    assert abs(float(ratio.median()) - 1) < 1e-4
    hist = kmeans_1d(x.cuda(), 16, w.cuda(), return_history=True)
    assert hist.history is not None and hist.history.shape == (x.shape[0], int(hist.n_iter.max()) + 1)
    assert torch.equal(hist.centroids, gpu.centroids)


# ---------------------------------------------------------------------------------------------
# errors


X = heavy_tailed((50, 6), seed=0).T.contiguous()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"x": X[0]}, ValueError),
        ({"x": X[None]}, ValueError),
        ({"x": torch.zeros(6, 0)}, ValueError),
        ({"x": torch.ones(6, 50, dtype=torch.int64)}, TypeError),
        ({"x": torch.where(X > 0.03, torch.nan, X)}, ValueError),
        ({"x": torch.where(X > 0.03, torch.inf, X)}, ValueError),
        ({"k": 0}, ValueError),
        ({"k": 257}, ValueError),
        ({"k": 2.0}, ValueError),
        ({"k": True}, ValueError),
        ({"weights": -torch.ones(6, 50)}, ValueError),
        ({"weights": torch.full((6, 50), torch.nan)}, ValueError),
        ({"weights": torch.full((50,), torch.inf)}, ValueError),
        ({"weights": torch.ones(6, 51)}, ValueError),
        ({"weights": torch.ones(49)}, ValueError),
        ({"weights": torch.ones(1, 50)}, ValueError),
        ({"iters": -1}, ValueError),
        ({"tol": -1.0}, ValueError),
        ({"tol": float("nan")}, ValueError),
        ({"backend": "sklearn"}, ValueError),
        ({"init": "random"}, ValueError),
        ({"init": torch.zeros(6, 3)}, ValueError),
        ({"init": torch.full((4,), torch.nan)}, ValueError),
        ({"n_local_trials": 0}, ValueError),
        ({"chunk_size": 0}, ValueError),
    ],
)
def test_bad_input_raises(kwargs: dict, error: type[Exception]) -> None:
    args = {"x": X, "k": 4, **kwargs}
    with pytest.raises(error):
        kmeans_1d(args.pop("x"), args.pop("k"), **args)


# ---------------------------------------------------------------------------------------------
# faiss backend


def test_faiss_backend_agrees_with_torch() -> None:
    pytest.importorskip("faiss")
    x = heavy_tailed((400, 16), seed=6).T.contiguous()
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    f = kmeans_1d(x, 8, w, backend="faiss")
    _check_result(x, 8, w, f)
    t = kmeans_1d(x, 8, w)
    assert abs(float((f.objective / t.objective).median()) - 1) < 1e-3


def test_faiss_missing_raises_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(FaissUnavailableError, match="faiss"):
        kmeans_1d(X, 4, backend="faiss")
    assert issubclass(FaissUnavailableError, ImportError)


def test_faiss_without_weights_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    class OldKmeans:
        def train(self, x: object) -> None: ...

    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace(Kmeans=OldKmeans, __version__="1.5"))
    with pytest.raises(FaissUnavailableError, match="weights"):
        kmeans_1d(X, 4, torch.ones(50), backend="faiss")
    with pytest.raises(ValueError, match="at least k"):
        kmeans_1d(X, 64, backend="faiss")


# ---------------------------------------------------------------------------------------------
# packaging


def test_import_is_light() -> None:
    code = ("import sys, lowbit.cluster as c; assert c.__version__ == '0.1.0'; "
            "bad = [m for m in ('faiss', 'transformers', 'triton', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_lowbit_init() -> None:
    assert not (PACKAGE / "src" / "lowbit" / "__init__.py").exists()

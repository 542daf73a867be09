"""Additive multi-codebook quantization (AQLM): vector k-means, beam search, codebook updates, accounting."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.cluster import (
    beam_search,
    kmeans_vectors,
    nearest_vectors,
    quantize_additive,
    residual_kmeans_init,
    update_codebooks,
)
from lowbit.cluster.additive import output_error
from lowbit.core.bits import bit_report
from lowbit.core.formats import additive_values
from lowbit.core.testing import heavy_tailed, random_hessian


def test_kmeans_vectors_assigns_to_nearest_and_does_not_get_worse() -> None:
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    c1, a1 = kmeans_vectors(x, 16, iters=1)
    c, a = kmeans_vectors(x, 16, iters=25)
    d = torch.cdist(x, c)
    assert torch.equal(a, d.argmin(1)) and torch.equal(a, nearest_vectors(x, c))
    sse = lambda c_, a_: float(((x - c_[a_]) ** 2).sum())  # noqa: E731
    assert sse(c, a) <= sse(c1, a1) + 1e-4


def test_kmeans_vectors_work_budget_caps_the_iterations() -> None:
    """At most max(1, max_evaluations // (N k)) Lloyd iterations: the budget of 3 passes gives the
    result of 3 iterations, a budget below one pass that of one; a large budget changes nothing."""
    x = torch.randn(400, 8, generator=torch.Generator().manual_seed(1))
    for budget, iters in ((400 * 16 * 3, 3), (400 * 16 * 3 + 5, 3), (7, 1)):
        c, a = kmeans_vectors(x, 16, iters=25, max_evaluations=budget)
        c_ref, a_ref = kmeans_vectors(x, 16, iters=iters)
        assert torch.equal(c, c_ref) and torch.equal(a, a_ref)
    c, _ = kmeans_vectors(x, 16, iters=25, max_evaluations=1 << 40)
    assert not torch.equal(c, kmeans_vectors(x, 16, iters=3)[0])


def test_kmeans_vectors_more_centroids_than_points_is_exact() -> None:
    x = torch.randn(10, 8)
    c, a = kmeans_vectors(x, 64)
    assert c.shape == (64, 8) and torch.equal(c[a], x)


def test_kmeans_vectors_bad_input() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        kmeans_vectors(torch.tensor([[0.0, float("nan")]]), 2)
    with pytest.raises(ValueError, match="non-empty"):
        kmeans_vectors(torch.zeros(0, 4), 2)


@settings(max_examples=16, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), M=st.integers(1, 3), beam=st.integers(1, 4), block=st.integers(1, 9),
       chunk=st.sampled_from([1, 1 << 27]))
def test_beam_search_never_increases_the_objective(seed: int, M: int, beam: int, block: int, chunk: int) -> None:
    """Any beam, any block of lazily updated positions (8 positions here), any chunking of rows."""
    W, H = heavy_tailed((24, 32), seed), random_hessian(32, seed + 1)
    codes, C, s = residual_kmeans_init(W, M, 3, 4, iters=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    C = C + 0.1 * torch.randn(C.shape, generator=g)  # codes no longer optimal for these codebooks
    s = s * torch.where(torch.rand(s.shape, generator=g) < 0.2, -1.0, 1.0)  # the sign of a scale is free
    before = float(output_error(W, additive_values(codes, C, s), H))
    new = beam_search(W, H, codes, C, s, beam_size=beam, block_groups=block, chunk_elements=chunk)
    after = float(output_error(W, additive_values(new, C, s), H))
    assert after <= before * (1 + 1e-5) + 1e-6


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), M=st.integers(1, 2), beam=st.integers(1, 3))
def test_beam_search_row_chunks_do_not_change_the_codes(seed: int, M: int, beam: int) -> None:
    """Scores are computed for chunks of rows (``chunk_elements``: one row at a time when it is
    smaller than beam x K); every row's scores and top-k are the same whatever the chunk."""
    W, H = heavy_tailed((24, 32), seed), random_hessian(32, seed + 1)
    codes, C, s = residual_kmeans_init(W, M, 5, 4, iters=3, seed=seed)
    C = C + 0.1 * torch.randn(C.shape, generator=torch.Generator().manual_seed(seed))
    whole = beam_search(W, H, codes, C, s, beam_size=beam)
    for chunk in (1, 7 * beam * 32):  # one row at a time; 7 rows a chunk (24 = 3 x 7 + 3)
        assert torch.equal(beam_search(W, H, codes, C, s, beam_size=beam, chunk_elements=chunk), whole)


def test_beam_search_finds_exact_codes_when_groups_decouple() -> None:
    """With a block-diagonal H (groups independent) and the exact vectors in the codebook, one pass
    of the search reproduces W exactly, from any starting codes."""
    g = torch.Generator().manual_seed(0)
    C = torch.randn(1, 16, 4, generator=g)
    true = torch.randint(0, 16, (8, 6, 1), generator=g)
    s = torch.rand(8, generator=g) + 0.5
    W = additive_values(true, C, s)
    H = torch.block_diag(*[random_hessian(4, i) for i in range(6)])
    found = beam_search(W, H, torch.zeros_like(true), C, s)
    assert torch.allclose(additive_values(found, C, s), W, atol=1e-5)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_full_beam_finds_the_best_pair_when_groups_decouple(seed: int) -> None:
    """Two codebooks of K = 4 and a beam of K: every pair is scored, so with a block-diagonal H each
    group gets the pair that brute force finds."""
    g = torch.Generator().manual_seed(seed)
    C, s = torch.randn(2, 4, 4, generator=g), torch.rand(6, generator=g) + 0.5
    W = torch.randn(6, 12, generator=g)
    blocks = [random_hessian(4, seed + i) for i in range(3)]
    found = beam_search(W, torch.block_diag(*blocks), torch.zeros(6, 3, 2, dtype=torch.int64), C, s, beam_size=4)
    pairs = (C[0][:, None, :] + C[1][None, :, :]).reshape(16, 4)  # (16, g): all sums
    for j, HJ in enumerate(blocks):
        R = W[:, None, 4 * j:4 * j + 4] / s[:, None, None] - pairs  # (rows, 16, g)
        best = torch.einsum("rpg,gh,rph->rp", R, HJ, R).argmin(1)
        assert torch.equal(found[:, j, 0] * 4 + found[:, j, 1], best)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), M=st.integers(1, 2))
def test_update_codebooks_solves_the_least_squares(seed: int, M: int) -> None:
    """With codes fixed, W_hat = diag(s) U(C) is linear in C: the conjugate-gradient solve reaches the
    dense least-squares optimum (for the scales it returns), and those scales are the per-row optimum."""
    W, H = heavy_tailed((10, 16), seed), random_hessian(16, seed + 1)
    codes, C, s = residual_kmeans_init(W, M, 2, 4, iters=2, seed=seed)
    C2, s2 = update_codebooks(W, H, codes, C, s, steps=64, rtol=0.0)
    E = lambda C_, s_: float(output_error(W, additive_values(codes, C_, s_), H))  # noqa: E731
    # dense: vec(W_hat) = A vec(C) with A the Jacobian, min ||L^T (w - A c)|| with H = L L^T per row
    A = torch.autograd.functional.jacobian(lambda c: additive_values(codes, c, s2), C2).reshape(W.numel(), -1)
    L = torch.linalg.cholesky(H.double())
    Lrow = torch.block_diag(*[L.T] * W.shape[0])  # rows of W stacked, each weighted by L^T
    c = torch.linalg.lstsq(Lrow @ A.double(), Lrow @ W.reshape(-1).double()).solution
    best = E(c.float().reshape(C.shape), s2)
    assert E(C2, s2) <= best * (1 + 1e-4) + 1e-7
    for f in (0.99, 1.01):
        assert E(C2, s2) <= E(C2, s2 * f) * (1 + 1e-6)


def test_codebook_holding_every_group_gives_zero_error() -> None:
    W, H = heavy_tailed((16, 32), 3), random_hessian(32, 4)  # 128 groups of 4, 256 codewords
    r = quantize_additive(W, H, n_codebooks=1, bits=8, group_size=4, max_rounds=1, codebook_steps=5)
    assert r.errors[0] < 1e-10
    assert r.errors[-1] < 1e-5  # fp16 storage of codebooks and scales only


def test_update_codebooks_returns_no_worse_parameters() -> None:
    W, H = heavy_tailed((32, 64), 5), random_hessian(64, 6)
    codes, C, s = residual_kmeans_init(W, 2, 4, 8, iters=5)
    before = float(output_error(W, additive_values(codes, C, s), H))
    C2, s2 = update_codebooks(W, H, codes, C, s, steps=30)
    assert float(output_error(W, additive_values(codes, C2, s2), H)) <= before


@pytest.mark.parametrize("M, B, g", [(1, 6, 4), (2, 4, 8)])
def test_quantize_additive_container_and_accounting(M: int, B: int, g: int) -> None:
    W, H = heavy_tailed((40, 64), 7), random_hessian(64, 8)
    r = quantize_additive(W, H, n_codebooks=M, bits=B, group_size=g, max_rounds=3, codebook_steps=20)
    qw = r.qweight
    assert qw.format == "additive" and qw.codes.shape == (40, 64 // g, M)
    assert torch.equal(qw.dequantize(), r.Q)
    assert all(b <= a * (1 + 1e-6) for a, b in zip(r.errors[:-2], r.errors[1:-1], strict=True))
    rep = bit_report(qw)
    assert rep.parts["codes"] == 40 * (64 // g) * M * B
    assert rep.parts["codebooks"] == 16 * M * (1 << B) * g
    assert rep.parts["scales"] == 16 * 40
    assert rep.total_bits == rep.parts["codes"] + rep.parts["codebooks"] + rep.parts["scales"]


def test_quantize_additive_bad_input() -> None:
    W, H = heavy_tailed((8, 12), 0), random_hessian(12, 1)
    with pytest.raises(ValueError, match="divide"):
        quantize_additive(W, H, group_size=8)
    with pytest.raises(ValueError, match="non-finite"):
        quantize_additive(W.clone().fill_(float("inf")), H, group_size=4)
    with pytest.raises(ValueError, match="1..16"):
        quantize_additive(W, H, bits=17, group_size=4)

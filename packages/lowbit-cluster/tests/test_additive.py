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


def test_kmeans_vectors_more_centroids_than_points_is_exact() -> None:
    x = torch.randn(10, 8)
    c, a = kmeans_vectors(x, 64)
    assert c.shape == (64, 8) and torch.equal(c[a], x)


def test_kmeans_vectors_bad_input() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        kmeans_vectors(torch.tensor([[0.0, float("nan")]]), 2)
    with pytest.raises(ValueError, match="non-empty"):
        kmeans_vectors(torch.zeros(0, 4), 2)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), M=st.integers(1, 3), beam=st.integers(1, 4))
def test_beam_search_never_increases_the_objective(seed: int, M: int, beam: int) -> None:
    W, H = heavy_tailed((24, 32), seed), random_hessian(32, seed + 1)
    codes, C, s = residual_kmeans_init(W, M, 3, 4, iters=3, seed=seed)
    g = torch.Generator().manual_seed(seed)
    C = C + 0.1 * torch.randn(C.shape, generator=g)  # codes no longer optimal for these codebooks
    before = float(output_error(W, additive_values(codes, C, s), H))
    new = beam_search(W, H, codes, C, s, beam_size=beam)
    after = float(output_error(W, additive_values(new, C, s), H))
    assert after <= before * (1 + 1e-5) + 1e-6


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


def test_codebook_holding_every_group_gives_zero_error() -> None:
    W, H = heavy_tailed((16, 32), 3), random_hessian(32, 4)  # 128 groups of 4, 256 codewords
    r = quantize_additive(W, H, n_codebooks=1, bits=8, group_size=4, max_rounds=1, adam_steps=5)
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
    r = quantize_additive(W, H, n_codebooks=M, bits=B, group_size=g, max_rounds=3, adam_steps=20)
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

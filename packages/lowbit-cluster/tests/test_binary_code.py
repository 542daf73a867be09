"""Binary-coding value sets: the exact histogram fit against brute force, the BCQ fit, GPTQT's quantizer."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.cluster.binary_code import code_signs, fit_binary_code, fit_binary_code_values
from lowbit.cluster.binary_column import BinaryCodeColumnQuantizer
from lowbit.core.bits import bit_report
from lowbit.core.formats import binary_code_values
from lowbit.core.testing import heavy_tailed, random_hessian


def brute_force(c: torch.Tensor, k: int, L: torch.Tensor) -> float:
    """Every assignment of the m levels to the 2^k codes, least squares for (o, alpha) each."""
    V = torch.cat([torch.ones(1 << k, 1, dtype=torch.float64), code_signs(k)], 1)
    sw = c.sqrt()
    best = float("inf")
    for a in itertools.product(range(1 << k), repeat=len(c)):
        A = V[list(a)]
        sol = torch.linalg.lstsq(A * sw[:, None], L * sw, driver="gelsd").solution
        best = min(best, float((c * (L - A @ sol) ** 2).sum()))
    return best


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), km=st.sampled_from([(1, 5), (2, 4), (2, 6), (3, 4), (3, 5)]),
       integer_levels=st.booleans())
def test_exact_fit_matches_brute_force(seed: int, km: tuple[int, int], integer_levels: bool) -> None:
    k, m = km
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(m, generator=g, dtype=torch.float64) * (torch.rand(m, generator=g) > 0.2)
    L = torch.arange(m, dtype=torch.float64)
    if not integer_levels:
        L = torch.randn(m, generator=g, dtype=torch.float64).sort().values
    fit = fit_binary_code(c[None], k, L)
    ref = brute_force(c, k, L)
    assert float(fit.error[0]) == pytest.approx(ref, rel=1e-7, abs=1e-12)
    assert (fit.alphas >= 0).all() and (fit.alphas[:, :-1] >= fit.alphas[:, 1:]).all()


ORDERS = {1: [[0, 1]], 2: [[0, 1, 2, 3]], 3: [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 4, 3, 5, 6, 7]]}


def every_cut(c: torch.Tensor, k: int, L: torch.Tensor) -> float:
    """No pruning: least squares on every monotone cut of the levels, in both code orders of k = 3
    (the module docstring's enumeration, written independently)."""
    m, K = len(c), 1 << k
    V = torch.cat([torch.ones(K, 1, dtype=torch.float64), code_signs(k)], 1)
    cuts = itertools.combinations_with_replacement(range(m + 1), K - 1)
    runs = torch.tensor([sum(([j] * (b - a) for j, (a, b) in enumerate(zip((0, *t), (*t, m), strict=True))), [])
                         for t in cuts])  # (n, m) the run of each level
    sw = c.sqrt()
    best = float("inf")
    for order in ORDERS[k]:
        A = V[torch.tensor(order)[runs]] * sw[:, None]  # (n, m, k + 1)
        sol = torch.linalg.lstsq(A, (L * sw).expand(A.shape[0], m)[..., None], driver="gelsd").solution
        best = min(best, float(((A @ sol)[..., 0] - L * sw).pow(2).sum(1).min()))
    return best


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), km=st.sampled_from([(2, 9), (2, 12), (3, 6), (3, 8)]),
       integer_levels=st.booleans(), chunk=st.sampled_from([1 << 22, 97]))
def test_pruned_fit_matches_every_cut(seed: int, km: tuple[int, int], integer_levels: bool, chunk: int) -> None:
    """The bound-and-prune search equals the unpruned enumeration on a batch of histograms with
    zeros, heavy tails (weights over six decades) and, off the integer grid, repeated levels."""
    k, m = km
    g = torch.Generator().manual_seed(seed)
    c = 10 ** (6 * torch.rand(3, m, generator=g, dtype=torch.float64) - 3)
    c = c * (torch.rand(3, m, generator=g) > torch.tensor([[0.0], [0.3], [0.6]]))  # different used-level counts
    L = torch.arange(m, dtype=torch.float64)
    if not integer_levels:
        L = torch.randn(m, generator=g, dtype=torch.float64).sort().values
        L[m // 2] = L[m // 2 - 1]
    fit = fit_binary_code(c, k, L, chunk=chunk)
    for p in range(3):
        assert float(fit.error[p]) == pytest.approx(every_cut(c[p], k, L), rel=1e-9, abs=1e-12 * float(c[p].sum()))


def test_exact_fit_is_batched_and_exact_on_representable_levels() -> None:
    counts = torch.rand(5, 8, dtype=torch.float64) + 0.1
    fit = fit_binary_code(counts, 3)  # 0..7 = 3.5 + 2 s1 + 1 s2 + 0.5 s3
    assert torch.allclose(fit.error, torch.zeros(5, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(fit.alphas, torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64).expand(5, 3))
    one = torch.stack([fit_binary_code(counts[i: i + 1], 2).error[0] for i in range(5)])
    assert torch.allclose(fit_binary_code(counts, 2).error, one)


def test_values_fit_improves_on_greedy() -> None:
    x = heavy_tailed((16, 64), 0).double()
    for k in (1, 2, 3):
        fit = fit_binary_code_values(x, k)
        greedy = fit_binary_code_values(x, k, iters=0)
        assert (fit.error <= greedy.error * (1 + 1e-9)).all()
    assert (fit_binary_code_values(x, 3).error <= fit_binary_code_values(x, 2).error * (1 + 1e-9)).all()


@pytest.mark.parametrize("first_bits, gs", [(None, None), (3, None), (3, 16), (4, None)])
def test_gptqt_quantizer_container_and_error(first_bits: int | None, gs: int | None) -> None:
    from lowbit.recon import hessian_error, quantize_weight, round_to_nearest

    W, H = heavy_tailed((32, 64), 1), random_hessian(64, 2)
    make = lambda: BinaryCodeColumnQuantizer(2, first_bits, gs)  # noqa: E731
    r = quantize_weight(W, H, make(), act_order=True)
    qw = r.qweight
    assert qw.format == "binary" and torch.equal(qw.dequantize(), r.Q)
    table = binary_code_values(qw.alphas.float(), qw.offsets.float())  # every value is one of its row's 2^k
    g = qw.group_index()
    assert ((r.Q[:, :, None] - table[:, g]).abs().amin(2) == 0).all()
    groups = 64 // (gs or 64)
    rep = bit_report(qw)
    assert rep.parts["codes"] == 2 * 32 * 64
    assert rep.parts["coefficients"] == 16 * 32 * groups * (2 + 1)
    parts = qw.split_rows([8, 24])
    assert torch.equal(torch.cat([p.dequantize() for p in parts]), r.Q)
    Q_rtn, _ = round_to_nearest(W, make())
    assert r.error <= hessian_error(W, Q_rtn, H) * (1 + 1e-6)


def test_reexplore_never_hurts_the_weight_error() -> None:
    from lowbit.recon import round_to_nearest

    W = heavy_tailed((32, 64), 3)
    plain, _ = round_to_nearest(W, BinaryCodeColumnQuantizer(2, 3, multipliers=(1.0,)))
    searched, _ = round_to_nearest(W, BinaryCodeColumnQuantizer(2, 3, multipliers=(1.0, 1.1, 1.2, 1.3)))
    assert (((W - searched) ** 2).sum(1) <= ((W - plain) ** 2).sum(1) * (1 + 1e-4) + 1e-9).all()


def test_bad_widths() -> None:
    with pytest.raises(ValueError, match="binary bits"):
        BinaryCodeColumnQuantizer(4, 4)
    with pytest.raises(ValueError, match="binary bits"):
        BinaryCodeColumnQuantizer(3, 2)
    with pytest.raises(ValueError, match="k <= 3|1..3"):
        fit_binary_code(torch.ones(1, 4), 4)

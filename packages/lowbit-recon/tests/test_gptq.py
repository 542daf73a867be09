"""GPTQ: blocked equals the plain column loop, beats round-to-nearest, handles bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowbit.core.bits import bit_report
from lowbit.core.testing import heavy_tailed, random_hessian
from lowbit.recon import UniformColumnQuantizer, hessian_error, inverse_cholesky, quantize_weight, round_to_nearest


def plain_gptq(W: torch.Tensor, H: torch.Tensor, bits: int, gs: int | None) -> torch.Tensor:
    """The textbook column-by-column GPTQ (no blocks, no act-order): update all later columns at once."""
    W = W.clone().double()
    U, _ = inverse_cholesky(H)
    U = U.double()
    d_in = W.shape[1]
    gs_ = gs or d_in
    Q = torch.zeros_like(W)
    from lowbit.core.uniform import fake_quantize, minmax_params
    for i in range(d_in):
        if i % gs_ == 0:
            s, z = minmax_params(W[:, i: i + gs_] if gs else W, bits)
        Q[:, i] = fake_quantize(W[:, i], s, z, bits)
        e = (W[:, i] - Q[:, i]) / U[i, i]
        W[:, i:] -= e[:, None] * U[i, i:][None, :]
    return Q.float()


@pytest.mark.parametrize("gs", [None, 16, 48])
@pytest.mark.parametrize("blocksize", [1, 32, 128])
def test_blocked_equals_plain(gs: int | None, blocksize: int) -> None:
    W, H = heavy_tailed((24, 96), 3), random_hessian(96, 4)
    r = quantize_weight(W, H, UniformColumnQuantizer(3, gs), blocksize=blocksize)
    Q = plain_gptq(W, H, 3, gs)
    assert torch.allclose(r.Q, Q, atol=1e-5)
    assert torch.equal(r.qweight.dequantize(), r.Q)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), bits=st.integers(2, 4), gs=st.sampled_from([None, 16, 32]),
       act_order=st.booleans(), d_out=st.integers(4, 48))
def test_gptq_error_not_above_rtn(seed: int, bits: int, gs: int | None, act_order: bool, d_out: int) -> None:
    W, H = heavy_tailed((d_out, 64), seed), random_hessian(64, seed + 1, n=96)
    r = quantize_weight(W, H, UniformColumnQuantizer(bits, gs, static_groups=True), act_order=act_order)
    Q_rtn, _ = round_to_nearest(W, UniformColumnQuantizer(bits, gs))
    assert r.error <= hessian_error(W, Q_rtn, H) * (1 + 1e-6)


def test_act_order_groups_and_their_cost() -> None:
    W, H = heavy_tailed((16, 64), 0), random_hessian(64, 1)
    dyn = quantize_weight(W, H, UniformColumnQuantizer(3, 16, static_groups=False), act_order=True)
    sta = quantize_weight(W, H, UniformColumnQuantizer(3, 16, static_groups=True), act_order=True)
    assert dyn.qweight.g_idx is not None and sta.qweight.g_idx is None
    assert torch.equal(dyn.qweight.dequantize(), dyn.Q) and torch.equal(sta.qweight.dequantize(), sta.Q)
    assert bit_report(dyn.qweight).parts["g_idx"] == 64 * 2
    assert bit_report(sta.qweight).bits_per_weight == pytest.approx(3 + (16 + 3) / 16)


def test_dead_columns() -> None:
    W, H = heavy_tailed((8, 32), 0), random_hessian(32, 1)
    H[5, :] = 0
    H[:, 5] = 0
    r = quantize_weight(W, H, UniformColumnQuantizer(4, 8))
    assert torch.isfinite(r.Q).all()
    assert (r.Q[:, 5] == 0).all()


def test_damping_retry_on_indefinite_hessian() -> None:
    H = random_hessian(32, 0, n=8)  # rank 8: singular
    H.diagonal().sub_(0.05 * H.diagonal().mean())  # and slightly indefinite
    W = heavy_tailed((8, 32), 0)
    r = quantize_weight(W, H, UniformColumnQuantizer(4), percdamp=0.01)
    assert r.damp > 0.01 and torch.isfinite(r.Q).all()


def test_bad_input() -> None:
    W, H = heavy_tailed((8, 32), 0), random_hessian(32, 1)
    bad = W.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        quantize_weight(bad, H, UniformColumnQuantizer(4))
    with pytest.raises(ValueError, match="non-finite"):
        round_to_nearest(bad, UniformColumnQuantizer(4))
    with pytest.raises(ValueError, match="does not divide"):
        quantize_weight(W, H, UniformColumnQuantizer(4, 12))
    with pytest.raises(ValueError, match="1..8"):
        UniformColumnQuantizer(9)
    with pytest.raises(ValueError, match="does not match"):
        quantize_weight(W, H[:16, :16], UniformColumnQuantizer(4))

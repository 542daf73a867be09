"""Activation fake quantization: error bounds per token and per tensor, hooks on and off."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lowbit.core.actquant import (
    calibrate_absmax,
    fake_quantize_symmetric,
    install_act_quant,
    per_token_absmax,
    remove_act_quant,
)


@pytest.mark.parametrize("bits", [4, 8])
def test_per_token_error_is_at_most_half_a_step(bits: int) -> None:
    x = torch.randn(3, 7, 64, generator=torch.Generator().manual_seed(bits)) * torch.logspace(-2, 2, 7)[:, None]
    amax = per_token_absmax(x)
    xq = fake_quantize_symmetric(x, amax, bits)
    step = amax / ((1 << (bits - 1)) - 1)
    assert ((xq - x).abs() <= step / 2 + 1e-6 * amax).all()
    assert torch.allclose(xq.abs().amax(-1, keepdim=True), amax)  # the largest value is on the grid
    assert (fake_quantize_symmetric(x, amax, 8) - x).abs().max() < (fake_quantize_symmetric(x, amax, 4) - x).abs().max()


def test_per_tensor_static_scale_clips_beyond_the_calibrated_range() -> None:
    x = torch.linspace(-2, 2, 101)
    amax = torch.tensor(1.0)
    xq = fake_quantize_symmetric(x, amax, 8)
    inside = x.abs() <= 1
    assert ((xq - x)[inside].abs() <= 0.5 / 127 + 1e-6).all()
    assert xq.max() <= 1 + 1e-6 and xq.min() >= -128 / 127 - 1e-6
    assert torch.equal(fake_quantize_symmetric(torch.zeros(4), torch.tensor(0.0), 8), torch.zeros(4))


def test_straight_through_gradient() -> None:
    x = torch.randn(4, 8, requires_grad=True)
    fake_quantize_symmetric(x, per_token_absmax(x), 4).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("granularity", ["tensor", "token"])
def test_hooks_install_and_remove(granularity: str) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    x = torch.randn(2, 5, 16)
    y = lin(x)
    amax = calibrate_absmax({"l": lin}, lambda: lin(x))
    assert float(amax["l"]) == pytest.approx(float(x.abs().max()))
    handles = install_act_quant({"l": lin}, 4, granularity, amax)
    scale = amax["l"] if granularity == "tensor" else per_token_absmax(x)
    assert torch.allclose(lin(x), nn.functional.linear(fake_quantize_symmetric(x, scale, 4), lin.weight, lin.bias))
    assert not torch.allclose(lin(x), y)
    remove_act_quant(handles)
    assert torch.equal(lin(x), y)


def test_bad_settings() -> None:
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="calibrated"):
        install_act_quant({"l": lin}, 8, "tensor")
    with pytest.raises(ValueError, match="granularity"):
        install_act_quant({"l": lin}, 8, "channel")
    with pytest.raises(ValueError, match="bits"):
        install_act_quant({"l": lin}, 1, "token")

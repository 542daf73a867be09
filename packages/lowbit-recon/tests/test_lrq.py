"""LRQ / FlexRound quantizer: round-to-nearest at initialisation, gradients to every parameter, block
reconstruction lowers the output error, the stored uniform weight is the trained weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lowbit.core.testing import ToyBlock, block_data
from lowbit.core.uniform import fake_quantize, minmax_params
from lowbit.recon import LRQWeight, block_error, finetune_block


@pytest.mark.parametrize("rank", [1, 4, None])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_zero_factors_are_round_to_nearest(rank: int | None, bits: int) -> None:
    W = torch.randn(24, 40, generator=torch.Generator().manual_seed(bits)) * 0.1
    s, z = minmax_params(W, bits)
    q = LRQWeight(W, bits, rank)
    assert torch.equal(q(W), fake_quantize(W, s[:, None], z[:, None], bits))


def test_nonzero_scaling_changes_the_rounding() -> None:
    W = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    q = LRQWeight(W, 3, 2)
    with torch.no_grad():
        q.c.add_(0.3)
    assert not torch.equal(q(W), LRQWeight(W, 3, 2)(W))


@pytest.mark.parametrize("rank", [3, None])
def test_gradients_reach_every_parameter(rank: int | None) -> None:
    """With ``L = 0`` (the initialisation) ``U`` gets no gradient by construction (``dS/dU = L^T``),
    so ``L`` is moved off zero first, as one Adam step would."""
    g = torch.Generator().manual_seed(1)
    W = torch.randn(12, 20, generator=g)
    q = LRQWeight(W, 4, rank)
    if q.L is not None:
        with torch.no_grad():
            q.L.normal_(0, 0.01, generator=g)
    x = torch.randn(5, 20, generator=g)
    loss = (x @ q(W).T - x @ W.T).pow(2).sum()
    loss.backward()
    for name, p in q.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    expected = {"log_ds", "r", "c", "L", "U"} if rank else {"log_ds", "r", "c", "S2"}
    assert {n for n, _ in q.named_parameters()} == expected


def _quantized_student(teacher: ToyBlock, bits: int, rank: int | None) -> tuple[ToyBlock, list[nn.Parameter]]:
    student = ToyBlock(teacher.norm.normalized_shape[0])
    student.load_state_dict(teacher.state_dict())
    params: list[nn.Parameter] = []
    for lin in (student.up, student.down):
        parametrize.register_parametrization(lin, "weight", LRQWeight(lin.weight, bits, rank), unsafe=True)
        params += lin.parametrizations.weight[0].trainable()
    return student, params


@pytest.mark.parametrize("rank", [4, None])
def test_reconstruction_lowers_block_error_and_stores_the_trained_weight(rank: int | None) -> None:
    torch.manual_seed(0)
    teacher = ToyBlock(16)
    x, y = block_data(teacher, 8, 16, 1)
    student, params = _quantized_student(teacher, 3, rank)
    rtn = block_error(student, x, y, range(8))
    report = finetune_block(student, x, y, params, lr=5e-3, max_epochs=30, patience=5)
    assert report.best_epoch >= 1
    assert block_error(student, x, y, range(8)) < 0.9 * rtn
    for lin in (student.up, student.down):
        trained = lin.weight.detach().clone()
        qw = lin.parametrizations.weight[0].result()
        assert qw.format == "uniform" and qw.group_size is None and qw.codes.dtype == torch.uint8
        assert int(qw.codes.max()) <= 7
        assert torch.equal(qw.dequantize(), trained)
        parametrize.remove_parametrizations(lin, "weight", leave_parametrized=False)
        lin.weight.data.copy_(qw.dequantize())
        assert torch.equal(lin.weight, trained)


def test_bad_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        LRQWeight(torch.randn(4, 4), 4, 0)
    with pytest.raises(ValueError, match="bits"):
        LRQWeight(torch.randn(4, 4), 9, 2)

"""Block output fine-tuning: lowers the held-out error, keeps the best epoch, trains only what it is given."""

from __future__ import annotations

import pytest
import torch

from lowbit.core.hf import BlockInputs
from lowbit.core.testing import ToyBlock, block_data
from lowbit.recon import block_error, finetune_block, split_batches


def test_split_batches() -> None:
    assert split_batches(8, 0.125) == (list(range(7)), [7])
    assert split_batches(1, 0.5) == ([0], [])
    assert split_batches(5, 0.0) == (list(range(5)), [])
    with pytest.raises(ValueError):
        split_batches(4, 1.0)


def test_finetune_lowers_the_held_out_error_and_trains_only_its_params() -> None:
    torch.manual_seed(0)
    teacher = ToyBlock(16)
    student = ToyBlock(16)
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():  # a "quantized" student: perturbed weights
        student.up.weight.add_(0.05 * torch.randn_like(student.up.weight))
        student.down.weight.add_(0.05 * torch.randn_like(student.down.weight))
    x, y = block_data(teacher, 8, 16, 1)
    up_before = student.up.weight.detach().clone()
    report = finetune_block(student, x, y, [student.down.weight, student.norm.weight], lr=1e-3, max_epochs=20,
                            patience=3)
    assert report.best_epoch >= 1
    assert min(report.val_errors[1:]) < report.val_errors[0]
    assert block_error(student, x, y, [7]) == pytest.approx(report.val_errors[report.best_epoch], rel=1e-5)
    assert torch.equal(student.up.weight, up_before)  # not given: not trained
    assert all(p.requires_grad for p in student.parameters())  # flags restored


def test_finetune_keeps_the_parameters_when_nothing_helps() -> None:
    teacher = ToyBlock(8)
    x, y = block_data(teacher, 4, 8, 2)
    before = teacher.down.weight.detach().clone()
    report = finetune_block(teacher, x, y, [teacher.down.weight], lr=1e-2, max_epochs=3)  # already exact
    assert report.best_epoch == 0 and torch.equal(teacher.down.weight, before)


def test_finetune_bad_input() -> None:
    block = ToyBlock(8)
    x, y = block_data(block, 3, 8, 3)
    with pytest.raises(ValueError, match="as many"):
        finetune_block(block, x, BlockInputs(x.device, y.hidden[:2], y.kwargs[:2]), [block.down.weight])
    with pytest.raises(ValueError, match="at least one parameter"):
        finetune_block(block, x, y, [])

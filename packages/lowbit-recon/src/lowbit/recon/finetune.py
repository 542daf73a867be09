"""Block output fine-tuning: learn a block's quantization parameters so its outputs match the
full-precision block's (AQLM, arXiv 2401.06118, section 3.4; LRQ, arXiv 2407.11534, learns its
scaling matrices by the same block reconstruction).

Given a decoder block whose trainable tensors are ``params`` (codebooks and scales, norm weights,
low-rank scaling factors: whatever the recipe made trainable, e.g. through
:func:`torch.nn.utils.parametrize.register_parametrization`), its inputs ``X_b`` (the quantized
model's, one tensor per calibration batch) and targets ``Y_b`` (the full-precision block's outputs on
the same inputs), minimise the relative output error

    L = sum_b ||block(X_b) - Y_b||^2 / sum_b ||Y_b||^2

with Adam over the training batches, one epoch at a time, and stop early when the error on held-out
batches (the last ``val_fraction`` of the calibration windows) has not improved for ``patience``
epochs. The parameters of the best validation epoch are restored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lowbit.core.hf import BlockInputs

log = logging.getLogger(__name__)


@dataclass
class FinetuneReport:
    """Relative validation error before training and after each epoch; the best epoch (0: none
    helped, the parameters are unchanged)."""

    val_errors: list[float] = field(default_factory=list)
    train_errors: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _out(out: object) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def split_batches(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of training and held-out batches: the last ``ceil(val_fraction * n)`` are held out
    (at least one when there are two batches or more; none when ``val_fraction`` is 0)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0 if val_fraction == 0 or n < 2 else max(1, min(n - 1, int(-(-val_fraction * n // 1))))
    return list(range(n - n_val)), list(range(n - n_val, n))


@torch.no_grad()
def block_error(block: nn.Module, inputs: BlockInputs, targets: BlockInputs, batches: Sequence[int]) -> float:
    """Relative output error ``sum ||block(X_b) - Y_b||^2 / sum ||Y_b||^2`` over ``batches``."""
    num = den = 0.0
    for b in batches:
        y = targets.hidden[b]
        num += float((_out(block(inputs.hidden[b], **inputs.kwargs[b])) - y).float().pow(2).sum())
        den += float(y.float().pow(2).sum())
    return num / max(den, 1e-30)


def finetune_block(block: nn.Module, inputs: BlockInputs, targets: BlockInputs, params: Sequence[Tensor], *,
                   lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.95), max_epochs: int = 5,
                   val_fraction: float = 0.125, patience: int = 1) -> FinetuneReport:
    """Train ``params`` (leaf tensors of ``block``, ``requires_grad``) to match ``targets``.

    Args:
        inputs: the block's inputs per calibration batch (with the keyword arguments to replay).
        targets: the full-precision block's outputs on the same batches.
        max_epochs: passes over the training batches at most; patience: epochs without a better
            held-out error before stopping (with no held-out batch, all ``max_epochs`` run and the
            last epoch is kept).
    """
    if len(inputs.hidden) != len(targets.hidden) or not inputs.hidden:
        raise ValueError(f"need as many target batches as input batches (got {len(inputs.hidden)} "
                         f"and {len(targets.hidden)}), and at least one")
    params = [p for p in params]
    if not params or not all(p.requires_grad for p in params):
        raise ValueError("finetune_block needs at least one parameter, all with requires_grad")
    train, val = split_batches(len(inputs.hidden), val_fraction)
    ids = {id(p) for p in params}
    frozen = [p for p in block.parameters() if p.requires_grad and id(p) not in ids]
    for p in frozen:  # no gradients for what is not trained
        p.requires_grad_(False)
    try:
        return _train(block, inputs, targets, params, train, val, lr, betas, max_epochs, patience)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _train(block: nn.Module, inputs: BlockInputs, targets: BlockInputs, params: list[Tensor], train: list[int],
           val: list[int], lr: float, betas: tuple[float, float], max_epochs: int, patience: int) -> FinetuneReport:
    report = FinetuneReport()
    report.val_errors.append(block_error(block, inputs, targets, val) if val else float("nan"))
    best = (report.val_errors[0], [p.detach().clone() for p in params])
    opt = torch.optim.Adam(params, lr=lr, betas=betas)
    den = sum(float(targets.hidden[b].float().pow(2).sum()) for b in train)
    stale = 0
    for epoch in range(1, max_epochs + 1):
        total = 0.0
        for b in train:
            with torch.enable_grad():
                out = _out(block(inputs.hidden[b], **inputs.kwargs[b]))
                loss = (out - targets.hidden[b]).float().pow(2).sum() / den
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            total += float(loss.detach())
        report.train_errors.append(total)
        err = block_error(block, inputs, targets, val) if val else float("nan")
        report.val_errors.append(err)
        if not val or err < best[0]:
            best, stale, report.best_epoch = (err, [p.detach().clone() for p in params]), 0, epoch
        else:
            stale += 1
            if stale >= patience:
                break
    with torch.no_grad():
        for p, v in zip(params, best[1], strict=True):
            p.copy_(v)
    log.debug("finetune: val %s, best epoch %d", report.val_errors, report.best_epoch)
    return report

"""LRQ (arXiv 2407.11534): per-row uniform grids whose rounding is decided by low-rank weight-scaling
matrices learned by block output reconstruction; FlexRound (arXiv 2306.00317) with ``--full-rank``.

    python recipes/lrq.py --bits 4 --rank 144 --steps 5000 --batch-size 2            # W4A16
    python recipes/lrq.py --bits 4 --act-bits 8 --act-granularity token               # W4A8, per-token
    python recipes/lrq.py --bits 8 --act-bits 8 --act-granularity tensor              # W8A8, per-tensor static
    python recipes/lrq.py --bits 3 --full-rank                                         # FlexRound W3A16
    python recipes/lrq.py --bits 4 --act-bits 8 --steps 0                              # RTN, same activations

For each decoder block (inputs from the already-quantized blocks, targets from the full-precision
block on the same inputs): with ``--act-bits``, the inputs of the block's linears are fake-quantized
(:mod:`lowbit.core.actquant`; per-tensor scales are the largest ``|x|`` of each linear's input over the
calibration windows, fixed; per-token scales are computed on the fly); each linear gets an
:class:`lowbit.recon.LRQWeight` parametrization (per-row min-max grid, ``L`` = 0, so training starts
from round-to-nearest exactly); ``lowbit.recon.finetune_block`` trains ``L, U, r, c, log s`` (or
FlexRound's full ``S2``) on the block's output error; the weights are then baked (stored as plain
per-row uniform codes, scales, zeros). The activation hooks stay on the model, so the next blocks
are calibrated and the model is evaluated with quantized activations.

A step is one Adam update on one calibration batch of ``--batch-size`` windows (the paper: batch 2).
``--steps`` is run as ``steps // training batches`` epochs (at least one) of ``finetune_block``, which holds out
the last eighth of the batches and stops early after ``--patience`` epochs without a better held-out
error (keeping the best epoch); so ``--steps`` is an upper bound. Not the paper's: no cosine learning
rate schedule (``finetune_block`` has a constant rate), early stopping. ``--save`` stores the weights
only; activation quantization is a runtime setting and is not written into the checkpoint. Only the
decoder blocks' linear inputs are quantized (not the LM head's).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from lowbit.core.hf import BlockContext
from lowbit.core.recipe import ActQuantConfig, arg, codes_only, main, run_recipe
from lowbit.recon import LRQWeight, block_error, finetune_block, split_batches

VAL_FRACTION = 0.125


@dataclasses.dataclass(frozen=True)
class LRQConfig(ActQuantConfig):
    """LRQ: low-rank weight-scaling matrices learned by block reconstruction (FlexRound with --full-rank)."""

    rank: int = arg(144, "rank k of L (d_out x k) and U (k x d_in); the reference's 1024 of 4096 is a "
                         "quarter of the smaller dimension, i.e. 144 of SmolLM2's 576")
    full_rank: bool = arg(False, "FlexRound: a full d_out x d_in scaling matrix instead of L U")
    steps: int = arg(5000, "Adam steps per block at most (one step: one batch of --batch-size windows); "
                           "0: no training (round-to-nearest with the same activation quantization)")
    lr: float | None = arg(None, "Adam learning rate (default: the paper's, 6e-4 for 3-bit, 5e-4 with "
                                 "8-bit activations and 4-bit weights, else 9e-4)")
    patience: int = arg(3, "epochs without a better held-out block error before stopping")

    def validate(self) -> None:
        super().validate()
        self.integer_bits()
        if self.groups is not None:
            raise ValueError("LRQ stores one grid per row; omit --group-size (or give 0)")
        if not self.full_rank and self.rank < 1:
            raise ValueError(f"--rank must be at least 1, got {self.rank} (or use --full-rank)")
        if self.steps < 0 or self.patience < 1:
            raise ValueError(f"--steps must be at least 0 and --patience at least 1, got {self.steps}, {self.patience}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if int(self.bits) <= 3:
            return 6e-4
        return 5e-4 if self.act_bits is not None and int(self.bits) == 4 else 9e-4


def epochs(steps: int, n_batches: int) -> int:
    """Whole epochs of ``finetune_block`` that make at most ``steps`` Adam steps on the training
    batches (at least one epoch when ``steps`` > 0)."""
    train, _ = split_batches(n_batches, VAL_FRACTION)
    return max(1, steps // len(train)) if steps else 0


def quantize_block(ctx: BlockContext, cfg: LRQConfig) -> dict[str, Any]:
    """Activation hooks (kept), LRQ parametrizations, block reconstruction, baked per-row weights."""
    t = time.perf_counter()
    cfg.quantize_activations(ctx)
    params: list[Tensor] = []
    for i, lin in enumerate(ctx.linears.values()):
        q = LRQWeight(lin.weight, cfg.integer_bits(), None if cfg.full_rank else cfg.rank, seed=cfg.seed + i)
        parametrize.register_parametrization(lin, "weight", q, unsafe=True)
        params += q.trainable()
    n = len(ctx.inputs.hidden)
    _, val = split_batches(n, VAL_FRACTION)
    held_out = val or list(range(n))
    rtn = block_error(ctx.block, ctx.inputs, ctx.fp_outputs, held_out)
    steps = 0
    if cfg.steps:
        report = finetune_block(ctx.block, ctx.inputs, ctx.fp_outputs, params, lr=cfg.learning_rate,
                                max_epochs=epochs(cfg.steps, n), val_fraction=VAL_FRACTION, patience=cfg.patience)
        steps = len(report.train_errors) * (n - len(val))
    out: dict[str, Any] = {}
    for name, lin in ctx.linears.items():
        qw = lin.parametrizations.weight[0].result()
        parametrize.remove_parametrizations(lin, "weight", leave_parametrized=False)
        lin.weight.data.copy_(qw.dequantize().to(lin.weight.dtype))
        out[name] = qw
    lrq = block_error(ctx.block, ctx.inputs, ctx.fp_outputs, held_out)
    if ctx.inputs.device.type == "cuda":
        torch.cuda.synchronize(ctx.inputs.device)
    out["block_errors"] = {"rtn": rtn, "lrq": lrq, "steps": steps, "seconds": time.perf_counter() - t}
    return out


def run(cfg: LRQConfig) -> dict[str, Any]:
    def extra(made: dict[str, Any]) -> dict[str, Any]:
        errs = [v for k, v in made.items() if k.endswith(".block_errors")]
        return {"block_error_rtn": [e["rtn"] for e in errs], "block_error_lrq": [e["lrq"] for e in errs],
                "block_error_ratio_median": statistics.median(e["lrq"] / e["rtn"] for e in errs if e["rtn"] > 0),
                "block_steps": [e["steps"] for e in errs], "block_seconds": [e["seconds"] for e in errs],
                "activations": None if cfg.act_bits is None else f"{cfg.act_bits}-bit per {cfg.act_granularity}",
                "learning_rate": cfg.learning_rate}

    kind = "flexround" if cfg.full_rank else f"lrq_r{cfg.rank}"
    name = f"{kind}_w{int(cfg.bits)}a{cfg.act_bits or 16}" + (f"_{cfg.act_granularity}" if cfg.act_bits else "")
    return run_recipe(cfg, name, lambda ctx: quantize_block(ctx, cfg), paper_bits=codes_only, extra=extra)


if __name__ == "__main__":
    sys.exit(main(run, LRQConfig))

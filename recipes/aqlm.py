"""AQLM (arXiv 2401.06118): additive multi-codebook quantization, then block output fine-tuning.

    python recipes/aqlm.py --codebooks 2 --codebook-bits 8 --in-group-size 8     # "2x8", about 2 bits
    python recipes/aqlm.py --codebooks 1 --codebook-bits 16                       # "1x16"
    python recipes/aqlm.py --codebooks 2 --codebook-bits 8 --no-finetune

Every linear layer of a block is quantized on its own (codebooks per layer) by
``lowbit.cluster.quantize_additive``; then, with ``--finetune``, the block's codebooks, scales and
norm weights are trained so the block's outputs match the full-precision block's outputs on the same
(quantized-model) inputs (``lowbit.recon.finetune_block``), and the next block is calibrated on the
fine-tuned block's outputs. Codes stay fixed during fine-tuning; codebooks and scales are stored in
fp16 (rounded after training).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from lowbit.cluster import quantize_additive
from lowbit.core.bits import BitReport
from lowbit.core.formats import QuantizedWeight, additive_values
from lowbit.core.hf import BlockContext
from lowbit.core.recipe import RecipeConfig, arg, main, run_recipe
from lowbit.recon import finetune_block


@dataclasses.dataclass(frozen=True)
class AQLMConfig(RecipeConfig):
    """AQLM: additive quantization of language models."""

    bits: float | None = arg(None, "optional check: must equal codebooks x codebook-bits / in-group-size")
    codebooks: int = arg(2, "M, codebooks per group")
    codebook_bits: int = arg(8, "B, each codebook has 2^B entries")
    in_group_size: int = arg(8, "g, consecutive input columns per group")
    beam_size: int = arg(1, "beam width of the code search")
    codebook_steps: int = arg(8, "conjugate-gradient iterations of the least-squares codebook update per "
                                 "round at most (it stops earlier when converged)")
    max_rounds: int = arg(10, "rounds of codebook update and code search at most per layer")
    tol: float = arg(0.01, "stop a layer when a round improves its error by less than this (relative)")
    kmeans_iters: int = arg(25, "Lloyd iterations of the residual k-means initialisation")
    finetune: bool = arg(True, "fine-tune codebooks, scales and norms on each block's outputs")
    finetune_lr: float = arg(1e-4, "Adam learning rate of the block fine-tuning")
    finetune_epochs: int = arg(5, "epochs of block fine-tuning at most (early stopping on held-out windows)")

    @property
    def code_bits(self) -> float:
        return self.codebooks * self.codebook_bits / self.in_group_size

    def validate(self) -> None:
        super().validate()
        if self.codebooks < 1 or not 1 <= self.codebook_bits <= 16 or self.in_group_size < 1:
            raise ValueError("need --codebooks >= 1, --codebook-bits in 1..16 and --in-group-size >= 1")
        if self.codebook_steps < 1:
            raise ValueError(f"--codebook-steps must be at least 1, got {self.codebook_steps}")
        if self.beam_size < 1:
            raise ValueError(f"--beam-size must be at least 1, got {self.beam_size}")
        if self.bits is not None and abs(self.bits - self.code_bits) > 1e-9:
            raise ValueError(f"--bits {self.bits} disagrees with {self.codebooks}x{self.codebook_bits} codes per "
                             f"{self.in_group_size} weights ({self.code_bits:g} bits); omit --bits")


class AdditiveWeight(nn.Module):
    """A parametrization ``weight = scales * sum_m codebooks[m][codes]`` with trainable codebooks and
    scales (the stored fp16 values, trained in fp32) and fixed codes."""

    def __init__(self, qw: QuantizedWeight) -> None:
        super().__init__()
        assert qw.codebooks is not None and qw.scales is not None
        self.register_buffer("codes", qw.codes)
        self.codebooks = nn.Parameter(qw.codebooks.float())
        self.scales = nn.Parameter(qw.scales.float())

    def forward(self, _: Tensor) -> Tensor:
        return additive_values(self.codes, self.codebooks, self.scales)


def finetune(ctx: BlockContext, made: dict[str, QuantizedWeight], cfg: AQLMConfig) -> dict[str, Any]:
    """Fine-tune the block's codebooks, scales and norm weights; returns the updated containers and,
    under ``"finetune"``, the held-out block error before and after (the kept epoch)."""
    params: list[Tensor] = []
    for name, lin in ctx.linears.items():
        parametrize.register_parametrization(lin, "weight", AdditiveWeight(made[name]), unsafe=True)
        p = lin.parametrizations.weight[0]
        params += [p.codebooks, p.scales]
    params += [p for n, p in ctx.block.named_parameters() if "norm" in n and p.requires_grad]
    report = finetune_block(ctx.block, ctx.inputs, ctx.fp_outputs, params, lr=cfg.finetune_lr,
                            max_epochs=cfg.finetune_epochs)
    out: dict[str, Any] = {"finetune": {"before": report.val_errors[0],
                                        "after": report.val_errors[report.best_epoch],
                                        "best_epoch": report.best_epoch}}
    for name, lin in ctx.linears.items():
        p = lin.parametrizations.weight[0]
        qw = dataclasses.replace(made[name], codebooks=p.codebooks.detach().half(), scales=p.scales.detach().half())
        parametrize.remove_parametrizations(lin, "weight", leave_parametrized=False)
        lin.weight.data.copy_(qw.dequantize().to(lin.weight.dtype))
        out[name] = qw
    return out


def paper_bits(report: BitReport) -> float:
    """AQLM's label: codes plus codebooks plus scales (the paper counts them all), i.e. the total."""
    return report.bits_per_weight


def run(cfg: AQLMConfig) -> dict[str, Any]:
    def block(ctx: BlockContext) -> dict[str, Any]:
        made: dict[str, QuantizedWeight] = {}
        for name, lin in ctx.linears.items():
            r = quantize_additive(lin.weight.detach().float(), ctx.stats[name].H, n_codebooks=cfg.codebooks,
                                  bits=cfg.codebook_bits, group_size=cfg.in_group_size, beam_size=cfg.beam_size,
                                  kmeans_iters=cfg.kmeans_iters, codebook_steps=cfg.codebook_steps,
                                  max_rounds=cfg.max_rounds, tol=cfg.tol, seed=cfg.seed)
            lin.weight.data.copy_(r.Q.to(lin.weight.dtype))
            r.qweight.meta["rel_errors"] = r.errors
            made[name] = r.qweight
        return finetune(ctx, made, cfg) if cfg.finetune else made

    def extra(made: dict[str, Any]) -> dict[str, Any]:
        qws = [v for v in made.values() if isinstance(v, QuantizedWeight)]
        final = [qw.meta["rel_errors"][-1] for qw in qws]
        rounds = [len(qw.meta["rel_errors"]) - 2 for qw in qws]
        out: dict[str, Any] = {"layer_rel_error_median": statistics.median(final), "layer_rel_error_max": max(final),
                               "rounds_median": statistics.median(rounds)}
        ft = [v for k, v in made.items() if k.endswith(".finetune")]
        ratios = [f["after"] / f["before"] for f in ft if math.isfinite(f["before"]) and f["before"] > 0]
        if ft:
            out["finetune_val_error_ratio_median"] = statistics.median(ratios) if ratios else None
            out["finetune_best_epochs"] = [f["best_epoch"] for f in ft]
        return out

    name = f"aqlm_{cfg.codebooks}x{cfg.codebook_bits}_g{cfg.in_group_size}" + ("_ft" if cfg.finetune else "")
    return run_recipe(cfg, name, block, paper_bits=paper_bits, extra=extra)


if __name__ == "__main__":
    sys.exit(main(run, AQLMConfig))

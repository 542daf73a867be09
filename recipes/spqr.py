"""SpQR (arXiv 2306.03078): GPTQ with groups of 16, 3-bit second-order statistics and fp16 outliers.

    python recipes/spqr.py --bits 3                          # 3 + 0.625 bits + outliers
    python recipes/spqr.py --bits 4                          # the reference's near-lossless setting

Reference defaults (Vahe1994/SpQR README and spqr_engine.py): groups of 16, scales and zeros
quantized to 3 bits in groups of 16, relative outlier threshold 0.2 with the leave-one-out pass,
act-order, damping 1.0 (100% of mean diag H). The paper's bit count is
``w + (3 + 3) / 16 + 2 (16 + 16) / 256 + 32 x outlier fraction``; the reported total counts the
outlier indices as stored (CSR/CSC) and the act-order group index too. Layers sharing an input
(q/k/v, gate/up) are quantized stacked by rows, so the outlier threshold's normaliser is the
stacked weight's.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from lowbit.core.bits import BitReport
from lowbit.core.hf import BlockContext
from lowbit.core.recipe import RecipeConfig, arg, main, quantize_linears, run_recipe
from lowbit.recon import quantize_weight
from lowbit.sparse.spqr import SpQRColumnQuantizer


@dataclasses.dataclass(frozen=True)
class SpQRConfig(RecipeConfig):
    """SpQR: sparse-quantized representation."""

    bits: float = arg(3, "weight code width")
    group_size: int | None = arg(16, "input columns per first-level group")
    stat_bits: int = arg(3, "width of the quantized group scales and zeros (0: fp16)")
    stat_group: int = arg(16, "output rows per second-level group")
    outlier_threshold: float = arg(0.2, "relative outlier threshold tau (inf: no outliers)")
    simplified_outliers: bool = arg(False, "skip the leave-one-out pass before each group fit")
    act_order: bool = arg(True, "process columns by decreasing Hessian diagonal")
    blocksize: int = arg(128, "columns per lazy-update block")
    percdamp: float = arg(1.0, "damping as a fraction of mean(diag H) (the reference uses 1.0)")

    def validate(self) -> None:
        super().validate()
        self.integer_bits()
        if not self.group_size:
            raise ValueError("SpQR needs a --group-size")


def paper_bits(report: BitReport) -> float:
    """SpQR's count: codes, quantized statistics and their fp16 parameters, 32 bits per outlier."""
    pw = report.per_weight()
    return (pw.get("codes", 0.0) + pw.get("scales", 0.0) + pw.get("zeros", 0.0) + pw.get("second_order", 0.0)
            + 2 * pw.get("outlier_values", 0.0))


def run(cfg: SpQRConfig) -> dict[str, Any]:
    def layer(W, H):
        q = SpQRColumnQuantizer(cfg.integer_bits(), cfg.groups or 16, stat_bits=cfg.stat_bits or None,
                                stat_group=cfg.stat_group, outlier_threshold=cfg.outlier_threshold,
                                simplified_outliers=cfg.simplified_outliers)
        r = quantize_weight(W, H, q, blocksize=cfg.blocksize, percdamp=cfg.percdamp, act_order=cfg.act_order)
        return r.Q, r.qweight

    def block(ctx: BlockContext):
        return quantize_linears(ctx, layer)

    return run_recipe(cfg, "spqr", block, paper_bits=paper_bits)


if __name__ == "__main__":
    sys.exit(main(run, SpQRConfig))

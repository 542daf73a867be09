"""CLAQ (arXiv 2405.17233): GPTQ with per-column k-means tables, outlier-guided precision and
outlier reservation.

    python recipes/claq.py --bits 3                 # fixed 3-bit tables
    python recipes/claq.py --bits 2.1               # adaptive precision: top 5% of columns at 4 bits
    python recipes/claq.py --bits 2 --reserve       # outlier reservation
    python recipes/claq.py --bits 2.1 --reserve     # both (the paper's "2.12 bit")

Choices (documented in docs/results.md): the reserved entries of a column are chosen on the layer's
weight before the GPTQ loop (the paper chooses them as the loop reaches the column); widths are
allocated by the paper's codes-only budget, and the reported total counts tables and outliers too.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import torch

from lowbit.alloc import claq_allocate, outlier_counts
from lowbit.cluster import KMeansColumnQuantizer
from lowbit.core.bits import BitReport
from lowbit.core.hf import BlockContext
from lowbit.core.recipe import RecipeConfig, arg, main, quantize_linears, run_recipe
from lowbit.recon import quantize_weight
from lowbit.sparse import reservation_fractions, reserve_column_outliers


@dataclasses.dataclass(frozen=True)
class CLAQConfig(RecipeConfig):
    """CLAQ: column-level adaptive quantization."""

    bits: float = arg(3, "average code bits: 2, 3, 4, or fractional in [2, 4] for adaptive precision")
    reserve: bool = arg(False, "dynamic outlier reservation (largest and smallest entries per column)")
    outlier_t: float = arg(13.0, "a weight is an outlier when |w| >= t * mean|W| of its layer")
    reserve_top: float = arg(0.10, "fraction of columns (by outlier count) that reserve rho-hi")
    rho_hi: float = arg(0.014, "entries reserved in the top columns")
    rho_lo: float = arg(0.004, "entries reserved in the other columns")
    act_order: bool = arg(True, "process columns by decreasing Hessian diagonal")
    percdamp: float = arg(0.01, "damping as a fraction of mean(diag H)")
    kmeans_iters: int = arg(100, "Lloyd iterations at most per column")

    def validate(self) -> None:
        super().validate()
        if self.bits != int(self.bits) and not 2 <= self.bits <= 4:
            raise ValueError(f"adaptive precision needs --bits in [2, 4], got {self.bits}")
        if self.bits == int(self.bits) and not 1 <= self.bits <= 8:
            raise ValueError(f"--bits must be in 1..8, got {self.bits}")


def widths_for(W: torch.Tensor, cfg: CLAQConfig) -> torch.Tensor:
    """Per-column widths: fixed, or CLAQ's outlier-guided allocation for a fractional budget."""
    if cfg.bits == int(cfg.bits):
        return torch.full((W.shape[1],), int(cfg.bits), dtype=torch.int64)
    return claq_allocate(W, cfg.bits, cfg.outlier_t).cpu()


def paper_bits(report: BitReport) -> float:
    """CLAQ's label: code bits per weight, plus 16 bits per reserved value (no tables, no indices)."""
    pw = report.per_weight()
    return pw.get("codes", 0.0) + pw.get("outlier_values", 0.0)


def run(cfg: CLAQConfig) -> dict[str, Any]:
    def layer(W: torch.Tensor, H: torch.Tensor):
        mask = None
        if cfg.reserve:
            rho = reservation_fractions(outlier_counts(W, cfg.outlier_t), cfg.reserve_top, cfg.rho_hi, cfg.rho_lo)
            mask, _ = reserve_column_outliers(W, rho)
        q = KMeansColumnQuantizer(widths_for(W, cfg), mask, iters=cfg.kmeans_iters, seed=cfg.seed)
        r = quantize_weight(W, H, q, percdamp=cfg.percdamp, act_order=cfg.act_order)
        return r.Q, r.qweight

    def block(ctx: BlockContext):
        return quantize_linears(ctx, layer, merge_shared=False)  # tables are per column of each layer

    return run_recipe(cfg, "claq", block, paper_bits=paper_bits)


if __name__ == "__main__":
    sys.exit(main(run, CLAQConfig))

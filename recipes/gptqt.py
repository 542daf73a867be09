"""GPTQT (arXiv 2407.02891): GPTQ with a linear step one, an exact binary-coding step two, merged.

    python recipes/gptqt.py --bits 2 --first-bits 3      # 2-bit binary codes from a 3-bit step one
    python recipes/gptqt.py --bits 3 --first-bits 4      # 3-bit from 4-bit (exact fit: a GPU job)
    python recipes/gptqt.py --bits 2 --first-bits 0      # plain binary coding (BCQ), no step one

Per output row (``--group-size`` for groups of input columns): an n-bit min-max grid, its integer
levels fit exactly by a k-bit binary code weighted by the row's level histogram, the two merged
into k fp16 coefficients and an fp16 offset per row (the ``binary`` format); the step-one scale is
re-explored over ``--multipliers``. Error feedback uses the merged values. The paper's label is
the code width (``bits_paper``: codes only).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from lowbit.cluster.binary_column import REEXPLORE, BinaryCodeColumnQuantizer
from lowbit.core.hf import BlockContext
from lowbit.core.recipe import RecipeConfig, arg, codes_only, main, quantize_linears, run_recipe
from lowbit.recon import quantize_weight


@dataclasses.dataclass(frozen=True)
class GPTQTConfig(RecipeConfig):
    """GPTQT: quantize twice (linear, then binary coding)."""

    bits: float = arg(2, "binary-code bits k")
    first_bits: int = arg(3, "step-one linear width n (0: no step one, plain binary coding)")
    multipliers: str = arg(",".join(map(str, REEXPLORE)), "re-explore: step-one scale multipliers, comma-separated")
    act_order: bool = arg(True, "process columns by decreasing Hessian diagonal")
    blocksize: int = arg(128, "columns per lazy-update block")
    percdamp: float = arg(0.01, "damping as a fraction of mean(diag H)")

    def validate(self) -> None:
        super().validate()
        self.integer_bits()
        BinaryCodeColumnQuantizer(int(self.bits), self.first_bits or None, multipliers=self.multiplier_values())

    def multiplier_values(self) -> tuple[float, ...]:
        try:
            return tuple(float(m) for m in self.multipliers.split(","))
        except ValueError:
            raise ValueError(f"--multipliers must be comma-separated numbers, got {self.multipliers!r}") from None


def run(cfg: GPTQTConfig) -> dict[str, Any]:
    def layer(W, H):
        q = BinaryCodeColumnQuantizer(cfg.integer_bits(), cfg.first_bits or None, cfg.groups,
                                      multipliers=cfg.multiplier_values())
        r = quantize_weight(W, H, q, blocksize=cfg.blocksize, percdamp=cfg.percdamp, act_order=cfg.act_order)
        return r.Q, r.qweight

    def block(ctx: BlockContext):
        return quantize_linears(ctx, layer)

    return run_recipe(cfg, "gptqt" if cfg.first_bits else "bcq", block, paper_bits=codes_only)


if __name__ == "__main__":
    sys.exit(main(run, GPTQTConfig))

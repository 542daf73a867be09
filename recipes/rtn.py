"""Round-to-nearest: the same uniform min-max column quantizer as GPTQ, without error feedback.

    python recipes/rtn.py --bits 4 --group-size 64
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from lowbit.core.hf import BlockContext
from lowbit.core.recipe import RecipeConfig, codes_only, main, quantize_linears, run_recipe
from lowbit.recon import UniformColumnQuantizer, round_to_nearest


@dataclasses.dataclass(frozen=True)
class RTNConfig(RecipeConfig):
    """Round-to-nearest: uniform min-max grids per row (and group)."""

    def validate(self) -> None:
        super().validate()
        self.integer_bits()


def run(cfg: RTNConfig) -> dict[str, Any]:
    def layer(W, H):
        return round_to_nearest(W, UniformColumnQuantizer(cfg.integer_bits(), cfg.groups))

    def block(ctx: BlockContext):
        return quantize_linears(ctx, layer)

    return run_recipe(cfg, "rtn", block, paper_bits=codes_only)


if __name__ == "__main__":
    sys.exit(main(run, RTNConfig))
